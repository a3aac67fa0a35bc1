// The benchmark's own float64 log-domain Sinkhorn (plain loops), used as the "reference" path only
// while the project's src/paths/reference has no Sinkhorn export. Engine conventions: f update,
// then g update unless last; stop after an f update; r = 1.
export function sinkhornF64(x, n, k, col, lam, o) {
  const M = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const r = i * k;
    if (o.inputKind === 'cost') for (let j = 0; j < k; j++) M[r + j] = x[r + j];
    else {
      let mx = -Infinity;
      for (let j = 0; j < k; j++) if (x[r + j] > mx) mx = x[r + j];
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp(x[r + j] - mx);
      const lse = mx + Math.log(s);
      for (let j = 0; j < k; j++) M[r + j] = lse - x[r + j];
    }
  }
  const f = new Float64Array(n), g = new Float64Array(k);
  const cmax = new Float64Array(k), csum = new Float64Array(k);
  for (let t = 1; t <= o.maxIter; t++) {
    for (let i = 0; i < n; i++) {
      const r = i * k;
      let mx = -Infinity;
      for (let j = 0; j < k; j++) { const v = (g[j] - M[r + j]) / lam; if (v > mx) mx = v; }
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp((g[j] - M[r + j]) / lam - mx);
      f[i] = -lam * (mx + Math.log(s));
    }
    if (t === o.maxIter) break;
    cmax.fill(-Infinity);
    csum.fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) { const v = (f[i] - M[i * k + j]) / lam; if (v > cmax[j]) cmax[j] = v; }
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) csum[j] += Math.exp((f[i] - M[i * k + j]) / lam - cmax[j]);
    for (let j = 0; j < k; j++) g[j] = lam * Math.log(col[j]) - lam * (cmax[j] + Math.log(csum[j]));
  }
  const out = { f, g, iterations: o.maxIter };
  if (o.plan) {
    const p = o.plan instanceof Float32Array ? o.plan : new Float32Array(n * k);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) p[i * k + j] = Math.exp((f[i] + g[j] - M[i * k + j]) / lam);
    out.plan = p;
  }
  if (o.predictions) {
    const pr = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let b = 0;
      for (let j = 1; j < k; j++) if (g[j] - M[i * k + j] > g[b] - M[i * k + b]) b = j;
      pr[i] = b;
    }
    out.predictions = pr;
  }
  return out;
}
