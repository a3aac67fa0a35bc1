/** Flag value parsers: a bad value becomes a usage error (exit 1) naming the flag. */
import { InvalidArgumentError } from 'commander';

export function num(flag: string, check: (x: number) => boolean = Number.isFinite, what = 'a number') {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x) || !check(x)) throw new InvalidArgumentError(`${flag} must be ${what}, got '${v}'`);
    return x;
  };
}
