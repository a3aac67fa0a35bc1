// The subset of the WebAssembly JS API that src/native/wasm*.ts and src/browser.ts use. TypeScript
// declares it in lib.dom only, and this package compiles against ES2022 + @types/node 20, which
// lacks it. Shapes as in the WebAssembly JS API specification.
declare namespace WebAssembly {
  class Module {
    constructor(bytes: ArrayBufferView | ArrayBuffer);
    static imports(m: Module): Array<{ module: string; name: string; kind: string }>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
  }
  class Instance {
    constructor(module: Module, imports?: Imports);
    readonly exports: Record<string, unknown>;
  }
  type ImportValue = ((...args: never[]) => unknown) | Memory | number;
  type Imports = Record<string, Record<string, ImportValue>>;
  function instantiate(module: Module, imports?: Imports): Promise<Instance>;
  function compile(bytes: ArrayBufferView | ArrayBuffer): Promise<Module>;
  function compileStreaming(source: Response | Promise<Response>): Promise<Module>;
}
