/** The model file's format tag and version (src/train/model-file.ts), apart so the browser build has them without fs. */
export const MODEL_FORMAT = 'otlm-model';
export const MODEL_VERSION = 1;
