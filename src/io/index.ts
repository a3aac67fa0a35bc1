/** File io: `.npy`, `.npz`, raw `.f32`, CSV, and atomic output files. */
export * from './errors.js';
export * from './npy.js';
export * from './npz.js';
export * from './text.js';
export * from './atomic.js';
export * from './matrix.js';
