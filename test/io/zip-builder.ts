/**
 * Hand-built zip archives for the `.npz` reader's tests: every field can be
 * set (or made to lie), ZIP64 and data descriptors included. Independent of
 * src/io so the reader is not checked against itself.
 */
import * as zlib from 'node:zlib';

const REF_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** Reference CRC-32: zlib's when Node has it, else a plain table loop. */
export function crcRef(data: Uint8Array): number {
  const z = (zlib as unknown as { crc32?: (d: Uint8Array) => number }).crc32;
  if (z) return z(data);
  let c = 0xffffffff;
  for (const b of data) c = REF_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Little-endian fields: [value, byte width]. */
function le(...fields: [number, 2 | 4 | 8][]): Buffer {
  const out = Buffer.alloc(fields.reduce((s, [, w]) => s + w, 0));
  let o = 0;
  for (const [v, w] of fields) {
    if (w === 8) out.writeBigUInt64LE(BigInt(v), o); else out.writeUIntLE(v, o, w);
    o += w;
  }
  return out;
}

export interface Member {
  name: string;
  /** Content; compressed per `method` unless `comp` is given. */
  data?: Uint8Array;
  method?: number;
  comp?: Uint8Array;
  /** Declared CRC and uncompressed size (default: those of `data`). */
  crc?: number;
  size?: number;
  /** Local header values that disagree with the central directory. */
  localCrc?: number;
  localSize?: number;
  /** Sizes and offset through ZIP64 extra fields (0xffffffff in the fixed fields). */
  zip64?: boolean;
  /** Bit 3: zero CRC and sizes in the local header, a data descriptor after the data. */
  descriptor?: boolean;
  /** Central directory offset of the local header (default: where it is written). */
  localOffset?: number;
  /** Skip writing the local header and data (use with `localOffset` to share another member's). */
  noData?: boolean;
}

const M32 = 0xffffffff;

export function buildZip(members: Member[], opts: { zip64Eocd?: boolean } = {}): Uint8Array {
  const body: Buffer[] = [];
  const cd: Buffer[] = [];
  let off = 0;
  for (const m of members) {
    const method = m.method ?? 0;
    const comp = Buffer.from(m.comp ?? (method === 8 ? zlib.deflateRawSync(m.data!) : m.data!));
    const size = m.size ?? m.data!.length;
    const crc = m.crc ?? crcRef(m.data!);
    const name = Buffer.from(m.name, 'utf8');
    const flags = (m.descriptor ? 8 : 0) | 0x800;
    const localOff = m.localOffset ?? off;
    if (!m.noData) {
      const lsize = m.localSize ?? size;
      const lextra = m.zip64 ? le([1, 2], [16, 2], [lsize, 8], [comp.length, 8]) : Buffer.alloc(0);
      const d = m.descriptor;
      const local = Buffer.concat([
        le([0x04034b50, 4], [45, 2], [flags, 2], [method, 2], [0, 2], [0x21, 2],
          [d ? 0 : m.localCrc ?? crc, 4], [d ? 0 : m.zip64 ? M32 : comp.length, 4], [d ? 0 : m.zip64 ? M32 : lsize, 4],
          [name.length, 2], [lextra.length, 2]),
        name, lextra, comp,
        d ? le([0x08074b50, 4], [crc, 4], [comp.length, 4], [size, 4]) : Buffer.alloc(0),
      ]);
      body.push(local);
      off += local.length;
    }
    const extra = m.zip64 ? le([1, 2], [24, 2], [size, 8], [comp.length, 8], [localOff, 8]) : Buffer.alloc(0);
    cd.push(Buffer.concat([
      le([0x02014b50, 4], [45, 2], [45, 2], [flags, 2], [method, 2], [0, 2], [0x21, 2], [crc, 4],
        [m.zip64 ? M32 : comp.length, 4], [m.zip64 ? M32 : size, 4], [name.length, 2], [extra.length, 2], [0, 2],
        [0, 2], [0, 2], [0, 4], [m.zip64 ? M32 : localOff, 4]),
      name, extra,
    ]));
  }
  const cdBuf = Buffer.concat(cd);
  const n = members.length;
  const tail: Buffer[] = [];
  if (opts.zip64Eocd) {
    const recOff = off + cdBuf.length;
    tail.push(le([0x06064b50, 4], [44, 8], [45, 2], [45, 2], [0, 4], [0, 4], [n, 8], [n, 8], [cdBuf.length, 8], [off, 8]));
    tail.push(le([0x07064b50, 4], [0, 4], [recOff, 8], [1, 4]));
    tail.push(le([0x06054b50, 4], [0, 2], [0, 2], [0xffff, 2], [0xffff, 2], [M32, 4], [M32, 4], [0, 2]));
  } else {
    tail.push(le([0x06054b50, 4], [0, 2], [0, 2], [n, 2], [n, 2], [cdBuf.length, 4], [off, 4], [0, 2]));
  }
  return new Uint8Array(Buffer.concat([...body, cdBuf, ...tail]));
}

/**
 * A raw DEFLATE stream of `prefix` followed by `mib` MiB of zeros, about 1 KiB
 * per MiB, built without ever holding the inflated bytes: independently
 * compressed pieces, each ended by a sync flush (non-final, byte-aligned), then
 * an empty final block.
 */
export function zeroBomb(prefix: Uint8Array, mib: number): Buffer {
  const flush = { level: 9, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  const piece = zlib.deflateRawSync(Buffer.alloc(1 << 20), flush);
  return Buffer.concat([zlib.deflateRawSync(prefix, flush), ...Array<Buffer>(mib).fill(piece), Buffer.from([0x03, 0x00])]);
}
