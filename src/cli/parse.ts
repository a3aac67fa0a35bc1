/**
 * Flag value parsers: a bad value becomes a usage error (exit 1) naming the flag. Each one applies
 * the check of the layer that owns the value (HYPER in src/api/validate.ts, parseShape in src/io),
 * so a flag never accepts what the library would refuse later.
 */
import { InvalidArgumentError } from 'commander';
import { checkHyper, type HyperName } from '../api/validate.js';
import { parseShape } from '../io/text.js';

/** A number flag for the library option `key`, with that option's range. */
export function hyper(flag: string, key: HyperName) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === '' || Number.isNaN(x)) throw new InvalidArgumentError(`${flag} must be a number, got '${v}'`);
    try {
      return checkHyper(flag, key, x);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

/** --shape ROWS,COLS, checked as the .f32 reader will read it; kept as the string. */
export function shape(flag: string) {
  return (v: string): string => {
    try {
      parseShape(v, flag);
      return v;
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}
