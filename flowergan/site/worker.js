// The model of the static page, off the main thread: a Web Worker that loads onnxruntime-web
// and the generator (model.onnx) and turns noise into RGBA pixels, so that the page (flowers.js)
// keeps answering its controls while a grid is generated.
//
// Messages from the page:
//   {type: "init", runtime: {wasm: {src, integrity}, webgpu: {src, integrity}}, model, backend,
//    threads}: backend "auto" (WebGPU where the browser offers a hardware adapter, WebAssembly
//    otherwise), "webgpu" or "wasm"; threads 0 = one per core.
//   {type: "generate", id, z, weights, num, zDim, classes, size}: a newer id supersedes every
//    older one (checked between chunks: no queue of stale grids).
// Answers: {type: "ready", backend, threads, isolated, adapter} or {type: "error", stage,
// message}; {type: "images", id, rgba, ms} or {type: "superseded", id} or {type: "failed", id,
// message}.
"use strict";

let session = null;
let latest = 0; // the newest request id seen: older ones stop at their next chunk
let jobs = Promise.resolve();

// Flowers per run: between runs the worker reads new messages, so a newer request stops an
// older one within a chunk's time. Measured with native onnxruntime at 128²: 7 chunks of 7
// take no longer than one batch of 49.
const CHUNK = 7;

function firstLine(error) {
  const text = String((error && error.message) || error).split("\n")[0];
  return text.length > 200 ? text.slice(0, 200) + "…" : text;
}

// The runtime script, checked against its SRI hash by fetch itself (importScripts cannot check
// one), then run from a blob URL.
async function loadRuntime({ src, integrity }) {
  const response = await fetch(src, integrity ? { integrity, mode: "cors" } : {});
  if (!response.ok) throw new Error(`${src}: HTTP ${response.status}`);
  const script = await response.text();
  const url = URL.createObjectURL(new Blob([script], { type: "text/javascript" }));
  try {
    importScripts(url);
  } finally {
    URL.revokeObjectURL(url);
  }
  ort.env.wasm.wasmPaths = new URL(".", src).href;
}

// A hardware WebGPU adapter (or any adapter when "webgpu" is asked for); null otherwise.
// Software adapters (SwiftShader, behind Chromium's unsafe flags) emulate the GPU on the CPU,
// slower than the WebAssembly backend, so "auto" does not take them.
async function webgpuAdapter(backend) {
  if (backend === "wasm" || !self.navigator || !navigator.gpu) return null;
  try {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) return null;
    const info = adapter.info || {};
    const software = adapter.isFallbackAdapter || /swiftshader/i.test(info.architecture || "");
    if (software && backend !== "webgpu") return null;
    return adapter;
  } catch {
    return null;
  }
}

async function init({ runtime, model, backend, threads }) {
  let stage = "runtime";
  try {
    const adapter = await webgpuAdapter(backend);
    const name = adapter ? "webgpu" : "wasm";
    await loadRuntime(runtime[name]);
    // Several threads need cross-origin isolation (COOP/COEP, or the page's service worker);
    // without it the runtime falls back to one.
    const cores = (self.navigator && navigator.hardwareConcurrency) || 1;
    ort.env.wasm.numThreads = self.crossOriginIsolated ? threads || Math.min(cores, 8) : 1;
    if (adapter) ort.env.webgpu.adapter = adapter; // the one chosen above
    stage = "model";
    const response = await fetch(model);
    if (!response.ok) throw new Error(`${model}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const providers = adapter ? ["webgpu", "wasm"] : ["wasm"];
    session = await ort.InferenceSession.create(bytes, { executionProviders: providers });
    const info = (adapter && adapter.info) || {};
    postMessage({
      type: "ready",
      backend: name,
      threads: ort.env.wasm.numThreads, // as the runtime set it up (1 when not isolated)
      isolated: Boolean(self.crossOriginIsolated),
      adapter: adapter ? [info.vendor, info.architecture].filter(Boolean).join(" ") : null,
    });
  } catch (error) {
    postMessage({ type: "error", stage, message: firstLine(error) });
  }
}

// Images in [-1, 1] (NHWC) → RGBA bytes, round((x + 1) / 2 * 255) as flowergan's to_uint8.
function toRgba(images, rgba, offset, pixels) {
  for (let p = 0; p < pixels; p++) {
    for (let c = 0; c < 3; c++) {
      const x = images[p * 3 + c];
      rgba[(offset + p) * 4 + c] = Math.min(255, Math.max(0, Math.round(((x + 1) / 2) * 255)));
    }
    rgba[(offset + p) * 4 + 3] = 255;
  }
}

const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

async function generate({ id, z, weights, num, zDim, classes, size }) {
  if (id !== latest) return postMessage({ type: "superseded", id });
  const start = performance.now();
  const pixels = size * size;
  const rgba = new Uint8ClampedArray(num * pixels * 4);
  try {
    for (let i = 0; i < num; i += CHUNK) {
      const n = Math.min(CHUNK, num - i);
      const feeds = {
        z: new ort.Tensor("float32", z.slice(i * zDim, (i + n) * zDim), [n, zDim]),
        class_weights: new ort.Tensor("float32", weights.slice(i * classes, (i + n) * classes), [
          n,
          classes,
        ]),
      };
      const result = await session.run(feeds);
      toRgba(result.images.data, rgba, i * pixels, n * pixels);
      result.images.dispose?.();
      await nextTask(); // reads the messages that came meanwhile
      if (id !== latest) return postMessage({ type: "superseded", id });
    }
  } catch (error) {
    return postMessage({ type: "failed", id, message: firstLine(error) });
  }
  postMessage({ type: "images", id, rgba, ms: performance.now() - start }, [rgba.buffer]);
}

self.onmessage = ({ data }) => {
  if (data.type === "init") {
    jobs = jobs.then(() => init(data));
  } else if (data.type === "generate") {
    latest = Math.max(latest, data.id);
    jobs = jobs.then(() => generate(data));
  }
};
