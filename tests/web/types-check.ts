// Compiled by types.test.mjs with `tsc --strict --noEmit`: the package's .d.ts
// as a web developer's editor sees it. Every `@ts-expect-error` line must be a
// type error (tsc fails on an unused one), so an `any` in the declarations, or
// an option that becomes optional again, fails the test.
import init, { Runtime, Model, type Classification, type PruneReport, type LayerReport } from "../../pkg/wgsparse.js";

export async function web(img: ImageData, bytes: Uint8Array): Promise<void> {
  await init();
  const rt = await Runtime.create();
  const name: string = rt.adapterInfo.name;
  const f16: boolean = rt.adapterInfo.shaderF16;
  const model = await Model.load(rt, bytes);

  const c: Classification = await model.classify(img);
  const dense = await model.classify(img, { dense: true, crop: false });
  const top: string = c.top5[0].name.toUpperCase();
  const waited: number = dense.ms - dense.queuedMs - dense.forwardMs;
  const logit: number = dense.logits[281];
  // @ts-expect-error the dense flag is an option, not a positional boolean
  await model.classify(img, true);
  // @ts-expect-error no such option
  await model.classify(img, { desne: true });
  // @ts-expect-error results are typed: no such field
  c.top5[0].probability;

  const r: PruneReport = await model.prune({ pattern: "unstructured", sparsity: 0.9 });
  await model.prune({ pattern: "2:4" });
  await model.prune({ pattern: "block:16x16", sparsity: 0.9, dispatch: "fastest", criterion: "activation" });
  await model.prune({ pattern: "dense" });
  // @ts-expect-error unstructured needs its sparsity
  await model.prune({ pattern: "unstructured" });
  // @ts-expect-error a block pattern needs its sparsity
  await model.prune({ pattern: "block:32x32" });
  // @ts-expect-error dense prunes nothing
  await model.prune({ pattern: "dense", sparsity: 0.5 });
  // @ts-expect-error the pattern is required
  await model.prune({ sparsity: 0.5 });
  // @ts-expect-error dispatch is "sparse" or "fastest"
  await model.prune({ pattern: "2:4", dispatch: "fast" });
  const l: LayerReport = r.layers[0];
  const kernel: string = l.kernel;
  // @ts-expect-error LayerReport is typed: no such field
  l.density;
  const ms: number = r.pruneMs + r.queuedMs;

  const mask = await model.layerMask(0);
  const kept: Uint8Array = mask.data;
  const times = await model.layerTimes({ runs: 2 });
  const src: "gpu-timestamps" | "wall-clock" = times[0].source;
  const x: Float32Array = model.preprocess(img, { crop: false });
  const ref: Float32Array = await model.referenceLogits(img);
  const info = model.info;
  const pattern: string | undefined = info?.pattern;
  rt.sparseMatrix(new Float32Array(6), 2, 3, { pattern: "2:4" });
  // @ts-expect-error unstructured needs its sparsity here too
  rt.sparseMatrix(new Float32Array(6), 2, 3, { pattern: "unstructured" });
  void [name, f16, top, waited, logit, kernel, ms, kept, src, x, ref, pattern];
}
