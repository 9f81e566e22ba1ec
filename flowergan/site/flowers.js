// This Flower Does Not Exist, drawn in the visitor's browser: flowergan's generator as ONNX
// (model.onnx, its metadata in model.json) run by onnxruntime-web in a Web Worker (worker.js:
// WebGPU where the browser offers it, WebAssembly on every core otherwise), so that the page
// answers its controls while it generates; coi.js gives it cross-origin isolation (threads).
//
// Noise: a seeded PRNG written here (xoshiro128**, seeded by a 32-bit mix of the seed), not
// Math.random and not JAX's PRNG: a seed shows the same flowers in every browser, but not the
// flowers `sample.py --seed` draws. Normal values come from the ratio-of-uniforms method
// (x = v / u, exactly rounded in every engine; Math.log only decides acceptance), truncated to
// ±truncation by resampling, as scipy's truncnorm of the original demo (same distribution).
// Flower i uses the i-th block of z_dim values of the seed's stream, so the first flowers do
// not change with the grid size; ALL draws each flower's class from a second stream.
"use strict";

(() => {
  // The controls' ranges and defaults come from model.json, written from flowergan.demo_app
  // (`page_settings`, which the Streamlit page reads too); `loadMetadata` checks them.
  const PAGE_SETTINGS = {
    truncation_range: "range",
    truncation_step: "number",
    default_truncation: "number",
    grid_range: "range",
    default_grid: "number",
    max_seed: "number",
  };
  const ALL = "ALL";
  const WALK_FRAMES = 24;
  const WALK_FRAME_MS = 120; // as flowergan.latents' GIFs
  const SQRT_2_OVER_E = Math.sqrt(2 / Math.E);

  const $ = (id) => document.getElementById(id);
  const api = { timings: [], state: null, meta: null, backend: null, answers: [], superseded: 0 };
  window.flowergan = api; // read by the tests and the benchmark (docs/)

  // ---------------------------------------------------------------- messages, state on <body>
  function say(text) {
    $("message").textContent = text;
    $("message").hidden = !text;
  }

  function setState(state) {
    document.body.dataset.state = state;
  }

  function fail(text) {
    say(text);
    setState("error");
    for (const control of document.querySelectorAll("button, input")) control.disabled = true;
  }

  function firstLine(error) {
    const text = String((error && error.message) || error).split("\n")[0];
    return text.length > 200 ? text.slice(0, 200) + "…" : text;
  }

  // ---------------------------------------------------------------- noise
  function mix32(x) {
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    return (x ^ (x >>> 16)) >>> 0;
  }

  function rotl(x, k) {
    return (x << k) | (x >>> (32 - k));
  }

  // xoshiro128** (Blackman & Vigna) on 32-bit integers; `stream` separates noise and classes.
  function makeRng(seed, stream) {
    const s = new Int32Array(4);
    let x = (seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      s[i] = mix32(x);
    }
    if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
    const next = () => {
      const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
      const t = s[1] << 9;
      s[2] ^= s[0];
      s[3] ^= s[1];
      s[1] ^= s[2];
      s[0] ^= s[3];
      s[2] ^= t;
      s[3] = rotl(s[3], 11);
      return result;
    };
    // A double in [0, 1) from 53 random bits.
    const uniform = () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
    return { uniform };
  }

  function normal(rng) {
    for (;;) {
      const u = 1 - rng.uniform(); // (0, 1]
      const v = (2 * rng.uniform() - 1) * SQRT_2_OVER_E;
      const x = v / u;
      if (x * x <= -4 * Math.log(u)) return x;
    }
  }

  function truncatedNormal(rng, t) {
    for (;;) {
      const x = normal(rng);
      if (Math.abs(x) <= t) return x;
    }
  }

  // Noise of `num` flowers of `seed`: float64 rows (num × zDim), flower i from the i-th block.
  function seedNoise(seed, num, zDim, truncation) {
    const rng = makeRng(seed, 0);
    const z = new Float64Array(num * zDim);
    for (let i = 0; i < z.length; i++) z[i] = truncatedNormal(rng, truncation);
    return z;
  }

  function seedClasses(seed, num, numClasses) {
    const rng = makeRng(seed, 1);
    return Array.from({ length: num }, () => Math.floor(rng.uniform() * numClasses));
  }

  function randomSeed() {
    const word = new Uint32Array(1);
    crypto.getRandomValues(word); // only picks a new seed; the flowers follow from the seed
    return word[0] % (api.meta.max_seed + 1);
  }

  // Spherical interpolation as flowergan.latents.slerp: the norm goes linearly from |a| to |b|.
  function slerp(a, b, t) {
    const norm = (x) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
    const na = norm(a);
    const nb = norm(b);
    const line = () => a.map((v, i) => (1 - t) * v + t * b[i]);
    if (na === 0 || nb === 0) return line();
    let cos = a.reduce((s, v, i) => s + (v / na) * (b[i] / nb), 0);
    cos = Math.min(1, Math.max(-1, cos));
    const omega = Math.acos(cos);
    if (Math.sin(omega) < 1e-6) return line();
    const scale = ((1 - t) * na + t * nb) / Math.sin(omega);
    return a.map(
      (v, i) => (Math.sin((1 - t) * omega) * (v / na) + Math.sin(t * omega) * (b[i] / nb)) * scale,
    );
  }

  // ---------------------------------------------------------------- settings and the URL
  function classChoices() {
    return [ALL, ...api.meta.class_names];
  }

  // Settings from the URL; values that are not valid are left at their defaults and named.
  function settingsFromUrl() {
    const {
      max_seed: maxSeed,
      grid_range: gridRange,
      truncation_range: truncationRange,
    } = api.meta;
    const params = new URLSearchParams(location.search);
    const settings = {
      choice: ALL,
      truncation: api.meta.default_truncation,
      grid: api.meta.default_grid,
      seed: null,
    };
    const ignored = [];
    const take = (name, parse, why) => {
      if (!params.has(name)) return;
      const value = parse(params.get(name));
      if (value === null) ignored.push(`${name}=${params.get(name)} (${why})`);
      return value;
    };
    const integer = (lo, hi) => (text) => {
      if (!/^\d+$/.test(text.trim())) return null;
      const value = Number(text);
      return value >= lo && value <= hi ? value : null;
    };
    const seed = take("seed", integer(0, maxSeed), `a whole number 0–${maxSeed}`);
    if (seed != null) settings.seed = seed;
    const grid = take("grid", integer(...gridRange), `${gridRange[0]}–${gridRange[1]}`);
    if (grid != null) settings.grid = grid;
    const truncation = take(
      "truncation",
      (text) => {
        const value = Number(text);
        const ok = text.trim() !== "" && value >= truncationRange[0] && value <= truncationRange[1];
        return ok ? value : null;
      },
      `${truncationRange[0]}–${truncationRange[1]}`,
    );
    if (truncation != null) settings.truncation = truncation;
    const choice = take(
      "class",
      (text) => (classChoices().includes(text) ? text : null),
      `one of ${classChoices().join(", ")}`,
    );
    if (choice != null) settings.choice = choice;
    if (settings.seed === null) settings.seed = randomSeed();
    return { settings, ignored };
  }

  function writeUrl(settings) {
    const params = new URLSearchParams({
      seed: String(settings.seed),
      class: settings.choice,
      truncation: String(settings.truncation),
      grid: String(settings.grid),
    });
    history.replaceState(null, "", `${location.pathname}?${params}`);
  }

  // ---------------------------------------------------------------- the model (worker.js)
  async function loadMetadata() {
    const response = await fetch("model.json");
    if (!response.ok) throw new Error(`model.json: HTTP ${response.status}`);
    const meta = await response.json();
    const keys = ["class_names", "z_dim", "image_size"];
    if (!keys.every((k) => k in meta) || !Array.isArray(meta.class_names)) {
      throw new Error("model.json lacks class_names, z_dim or image_size");
    }
    const isNumber = (x) => typeof x === "number" && Number.isFinite(x);
    const isRange = (x) => Array.isArray(x) && x.length === 2 && x.every(isNumber) && x[0] <= x[1];
    const lacking = Object.entries(PAGE_SETTINGS)
      .filter(([key, kind]) => !(kind === "range" ? isRange : isNumber)(meta[key]))
      .map(([key]) => key);
    if (lacking.length) {
      const names = lacking.join(", ");
      throw new Error(`model.json lacks the page's settings ${names} (an older export)`);
    }
    return meta;
  }

  // The runtime's files as `python -m flowergan.export` wrote them into the page: the
  // WebAssembly and the WebGPU build, each with its SRI hash.
  function runtimeFiles() {
    const tag = $("ort-runtime");
    const file = (src, integrity) => ({ src: new URL(src, location.href).href, integrity });
    return {
      wasm: file(tag.content, tag.dataset.integrity),
      webgpu: file(tag.dataset.webgpu, tag.dataset.webgpuIntegrity),
    };
  }

  // The worker holds the runtime and the model; the page sends it noise and gets RGBA pixels.
  // Options for tests and benchmarks (window.flowerganOptions, set before the page loads):
  // backend "auto" | "wasm" | "webgpu", threads (0: one per core).
  let worker = null;
  const pending = new Map(); // request id → {resolve, reject}
  let lastId = 0;

  function startWorker() {
    const options = Object.assign({ backend: "auto", threads: 0 }, window.flowerganOptions);
    worker = new Worker("worker.js");
    const ready = new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => {
        if (data.type === "ready") resolve(data);
        else if (data.type === "error") reject(Object.assign(new Error(data.message), data));
        else answer(data);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        reject(Object.assign(new Error(event.message || "worker.js did not load"), { stage: "worker" }));
      };
    });
    worker.postMessage({
      type: "init",
      runtime: runtimeFiles(),
      model: new URL("model.onnx", location.href).href,
      backend: options.backend,
      threads: options.threads,
    });
    return ready;
  }

  function answer(data) {
    if (data.type === "superseded") api.superseded++; // stopped in the worker (tests count)
    const waiting = pending.get(data.id);
    if (!waiting) return;
    pending.delete(data.id);
    if (data.type === "images") waiting.resolve(data.rgba);
    else if (data.type === "superseded") waiting.resolve(null);
    else waiting.reject(new Error(data.message));
  }

  // RGBA pixels (num × S × S × 4) of noise rows and class-weight rows, or null when a newer
  // request superseded this one (the worker stops it at its next chunk of flowers).
  function generate(z, weights, num) {
    const { z_dim: zDim, class_names: names, image_size: size } = api.meta;
    const id = ++lastId;
    for (const [older, waiting] of pending) {
      pending.delete(older);
      waiting.resolve(null);
    }
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({
        type: "generate",
        id,
        z: Float32Array.from(z.slice(0, num * zDim)),
        weights: Float32Array.from(weights.slice(0, num * names.length)),
        num,
        zDim,
        classes: names.length,
        size,
      });
    });
  }

  function oneHot(classes) {
    const c = api.meta.class_names.length;
    const weights = new Float32Array(classes.length * c);
    classes.forEach((k, i) => (weights[i * c + k] = 1));
    return weights;
  }

  // Image `index` of RGBA pixels from the worker.
  function imageData(rgba, index) {
    const size = api.meta.image_size;
    const bytes = size * size * 4;
    return new ImageData(rgba.slice(index * bytes, (index + 1) * bytes), size, size);
  }

  // ---------------------------------------------------------------- drawing the grid
  function drawGrid(images, classes, columns, showClasses) {
    const size = api.meta.image_size;
    const box = $("flowers");
    box.style.gridTemplateColumns = `repeat(${columns}, minmax(0, 1fr))`;
    box.replaceChildren(
      ...classes.map((k, i) => {
        const figure = document.createElement("figure");
        const canvas = document.createElement("canvas");
        canvas.width = size;
        canvas.height = size;
        canvas.getContext("2d").putImageData(imageData(images, i), 0, 0);
        figure.append(canvas);
        if (showClasses) {
          const caption = document.createElement("figcaption");
          caption.textContent = api.meta.class_names[k];
          figure.append(caption);
        }
        return figure;
      }),
    );
  }

  // The grid as one canvas at the size shown (each flower enlarged by the same whole factor,
  // nearest-neighbour), 2 px white borders as sample.py's grids.
  function gridCanvas() {
    const cells = Array.from(document.querySelectorAll("#flowers canvas"));
    const size = api.meta.image_size;
    const columns = api.state.grid;
    const factor = Math.max(1, Math.round(cells[0].getBoundingClientRect().width / size));
    const cell = size * factor;
    const pad = 2;
    const rows = Math.ceil(cells.length / columns);
    const out = document.createElement("canvas");
    out.width = columns * (cell + pad) + pad;
    out.height = rows * (cell + pad) + pad;
    const ctx = out.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, out.width, out.height);
    cells.forEach((c, i) => {
      const x = pad + (i % columns) * (cell + pad);
      const y = pad + Math.floor(i / columns) * (cell + pad);
      ctx.drawImage(c, x, y, cell, cell);
    });
    return out;
  }

  function download() {
    const s = api.state;
    gridCanvas().toBlob((blob) => {
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `flowers_seed${s.seed}_${s.choice}_t${s.truncation}_${s.grid}x${s.grid}.png`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    }, "image/png");
  }

  // ---------------------------------------------------------------- requests: the newest wins
  // A request is answered at once (controls, URL, state "busy"); its grid comes from the worker
  // later, unless a newer request supersedes it first (then it is never drawn).
  function request(change) {
    Object.assign(api.state, change);
    stopWalk();
    const s = api.state;
    writeUrl(s);
    syncControls();
    setState("busy");
    const num = s.grid * s.grid;
    const names = api.meta.class_names;
    const classes =
      s.choice === ALL ? seedClasses(s.seed, num, names.length) : Array(num).fill(names.indexOf(s.choice));
    const start = performance.now();
    const z = seedNoise(s.seed, num, api.meta.z_dim, s.truncation);
    return generate(z, oneHot(classes), num).then(
      (images) => {
        if (images === null) return; // superseded: the newer request draws
        drawGrid(images, classes, s.grid, s.choice === ALL);
        const end = performance.now();
        api.timings.push({ grid: s.grid, ms: end - start, since_start: end, at: performance.timeOrigin + end });
        $("caption").textContent = `Seed ${s.seed} · ${s.choice} · truncation ${s.truncation}`;
        $("info").textContent = `${num} flower${num > 1 ? "s" : ""} in ${Math.round(end - start)} ms
          on this device (${backendLine()}) · ${infoLine()}`;
        setState("ready");
      },
      (error) => {
        say(`Drawing failed (${firstLine(error)}): reload the page.`);
        setState("error");
      },
    );
  }

  function backendLine() {
    const b = api.backend;
    if (b.backend === "webgpu") return `WebGPU${b.adapter ? ` (${b.adapter})` : ""}`;
    const isolation = b.isolated ? "" : ", not cross-origin isolated";
    return `WebAssembly, ${b.threads} thread${b.threads > 1 ? "s" : ""}${isolation}`;
  }

  function infoLine() {
    const m = api.meta;
    const step = m.imported_generator ? `imported ${m.imported_generator}` : `step ${m.step}`;
    return `${m.image_size}×${m.image_size} images, ${step}, classes ${m.class_names.join(", ")}`;
  }

  // Test hook: draws noise `z` (num × z_dim) with class weights (num × C) into the grid, as
  // given (no PRNG), so that the pixels can be compared with flowergan's.
  api.render = async (z, weights, columns) => {
    stopWalk();
    const num = z.length / api.meta.z_dim;
    const images = await generate(z, weights, num);
    if (images === null) return;
    const c = api.meta.class_names.length;
    const classes = Array.from({ length: num }, (_, i) => {
      const row = Array.from(weights.slice(i * c, (i + 1) * c));
      return row.indexOf(Math.max(...row));
    });
    drawGrid(images, classes, columns || Math.ceil(Math.sqrt(num)), true);
  };
  api.gridCanvas = () => gridCanvas();
  api.seedNoise = seedNoise;

  // ---------------------------------------------------------------- the latent walk
  let walkTimer = null;

  function stopWalk() {
    if (walkTimer !== null) clearInterval(walkTimer);
    walkTimer = null;
    $("walk-canvas").hidden = true;
    $("walk").textContent = "Latent walk";
  }

  // From the first flower to the first flower of the next seed (its class in ALL), slerp
  // between the noises and a class morph, played forth and back.
  async function walk() {
    const s = api.state;
    const zDim = api.meta.z_dim;
    const names = api.meta.class_names;
    const c = names.length;
    const next = (s.seed + 1) % (api.meta.max_seed + 1);
    const classOf = (seed) => (s.choice === ALL ? seedClasses(seed, 1, c)[0] : names.indexOf(s.choice));
    const a = Array.from(seedNoise(s.seed, 1, zDim, s.truncation));
    const b = Array.from(seedNoise(next, 1, zDim, s.truncation));
    const [ka, kb] = [classOf(s.seed), classOf(next)];
    const z = new Float32Array(WALK_FRAMES * zDim);
    const weights = new Float32Array(WALK_FRAMES * c);
    for (let f = 0; f < WALK_FRAMES; f++) {
      const t = f / (WALK_FRAMES - 1);
      const row = f === 0 ? a : f === WALK_FRAMES - 1 ? b : slerp(a, b, t);
      z.set(row, f * zDim);
      weights[f * c + ka] += 1 - t;
      weights[f * c + kb] += t;
    }
    setState("busy");
    const images = await generate(z, weights, WALK_FRAMES);
    if (images === null) return; // a newer request (a new grid) came first
    setState("ready");
    const size = api.meta.image_size;
    const canvas = $("walk-canvas");
    canvas.width = size;
    canvas.height = size;
    const frames = Array.from({ length: WALK_FRAMES }, (_, f) => imageData(images, f));
    const order = [...frames.keys(), ...[...frames.keys()].slice(1, -1).reverse()];
    let position = 0;
    const draw = () => {
      canvas.getContext("2d").putImageData(frames[order[position]], 0, 0);
      position = (position + 1) % order.length;
    };
    draw();
    canvas.hidden = false;
    $("walk").textContent = "Stop walk";
    walkTimer = setInterval(draw, WALK_FRAME_MS);
    say(`Latent walk: seed ${s.seed} (${names[ka]}) → seed ${next} (${names[kb]}), ${WALK_FRAMES} frames.`);
  }

  // ---------------------------------------------------------------- controls
  function buildClassChoices() {
    const box = $("classes");
    for (const choice of classChoices()) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "class";
      input.value = choice;
      input.addEventListener("change", () => request({ choice }));
      label.append(input, ` ${choice}`);
      box.append(label);
    }
  }

  // The inputs' ranges, from model.json (index.html has none of its own).
  function setUpControls() {
    const m = api.meta;
    const [truncation, grid] = [$("truncation"), $("grid")];
    [truncation.min, truncation.max, truncation.step] = [...m.truncation_range, m.truncation_step];
    [grid.min, grid.max, grid.step] = [...m.grid_range, 1];
    $("seed").max = m.max_seed;
  }

  // The truncation with as many decimals as its step has (two for a step of a hundredth).
  function truncationText(value) {
    const decimals = (String(api.meta.truncation_step).split(".")[1] || "").length;
    return Number(value).toFixed(decimals);
  }

  function syncControls() {
    const s = api.state;
    for (const input of document.querySelectorAll('input[name="class"]')) {
      input.checked = input.value === s.choice;
    }
    $("truncation").value = s.truncation;
    $("truncation-value").textContent = truncationText(s.truncation);
    $("grid").value = s.grid;
    $("grid-value").textContent = `${s.grid}×${s.grid}`;
    if (document.activeElement !== $("seed")) $("seed").value = s.seed;
  }

  function bindControls() {
    $("truncation").addEventListener("input", () => {
      $("truncation-value").textContent = truncationText($("truncation").value);
    });
    $("truncation").addEventListener("change", () =>
      request({ truncation: Number($("truncation").value) }),
    );
    $("grid").addEventListener("input", () => request({ grid: Number($("grid").value) }));
    $("seed").addEventListener("change", () => {
      const text = $("seed").value.trim();
      const value = Number(text);
      const maxSeed = api.meta.max_seed;
      if (/^\d+$/.test(text) && value <= maxSeed) {
        say("");
        request({ seed: value });
      } else {
        say(`The seed must be a whole number from 0 to ${maxSeed}; kept ${api.state.seed}.`);
        $("seed").value = api.state.seed;
      }
    });
    $("new").addEventListener("click", () => {
      say("");
      request({ seed: randomSeed() });
    });
    $("walk").addEventListener("click", () => {
      if (walkTimer !== null) {
        stopWalk();
        say("");
      } else {
        walk().catch((error) => {
          say(`The walk failed (${firstLine(error)}).`);
          setState("ready");
        });
      }
    });
    $("download").addEventListener("click", download);
    document.addEventListener("keydown", (event) => {
      const typing = event.target instanceof HTMLInputElement && event.target.type === "number";
      if ((event.key === "r" || event.key === "R") && !typing && !event.ctrlKey && !event.metaKey) {
        $("new").click();
      }
    });
  }

  // ---------------------------------------------------------------- start
  // Cross-origin isolation (several threads) where the server sends no COOP/COEP headers:
  // coi.js, a service worker, adds them; a page gets them from the response that loaded it,
  // so the first visit reloads once. Returns when the page goes on (isolated or not).
  async function isolate() {
    const key = "flowergan-isolation-reload";
    const storage = (() => {
      try {
        return window.sessionStorage;
      } catch {
        return null; // storage blocked: no reload, since none could be counted
      }
    })();
    if (self.crossOriginIsolated) {
      storage?.removeItem(key);
      return;
    }
    const options = window.flowerganOptions || {};
    if (!storage || !("serviceWorker" in navigator) || !window.isSecureContext || options.isolate === false) return;
    try {
      await navigator.serviceWorker.register("coi.js");
      await navigator.serviceWorker.ready;
    } catch {
      return; // refused (private mode, policies): one thread
    }
    if (storage.getItem(key)) return; // reloaded once already and still not isolated
    storage.setItem(key, "1");
    location.reload();
    await new Promise(() => {}); // the reload replaces this page
  }

  // Each key press and control change, timed to the frame that shows its answer (tests and
  // docs/measure_static_page.py read api.answers); `busy`: a grid was being generated.
  function timeAnswers() {
    api.answers = [];
    for (const type of ["keydown", "input", "click"]) {
      document.addEventListener(
        type,
        (event) => {
          const busy = document.body.dataset.state === "busy";
          requestAnimationFrame(() =>
            api.answers.push({ type, busy, ms: performance.now() - event.timeStamp }),
          );
        },
        true,
      );
    }
  }

  async function start() {
    const served = location.protocol === "file:" ? " (open it through a web server: " +
      "python -m http.server -d FOLDER, browsers do not fetch models from file://)" : "";
    if (typeof WebAssembly !== "object") {
      fail("This browser has no WebAssembly, which the model runs on: open the page in a " +
        "current Chrome, Firefox, Safari or Edge with WebAssembly enabled.");
      return;
    }
    await isolate();
    const rebuild = "write the site again with python -m flowergan.export --format=web.";
    const backend = startWorker();
    backend.catch(() => {}); // awaited below, after model.json
    try {
      api.meta = await loadMetadata();
    } catch (error) {
      fail(`The model's description could not be read (${firstLine(error)})${served}: ${rebuild}`);
      return;
    }
    try {
      api.backend = await backend;
    } catch (error) {
      const runtime = runtimeFiles().wasm.src;
      if (error.stage === "runtime") {
        fail(`The runtime (onnxruntime-web) did not load from ${runtime} (${firstLine(error)}): ` +
          "check the connection, or write the site with --runtime=web/node_modules/" +
          "onnxruntime-web/dist to serve it beside the page.");
      } else if (error.stage === "worker") {
        fail(`The page's worker.js did not start (${firstLine(error)})${served}: ${rebuild}`);
      } else {
        fail(`The model file could not be loaded (${firstLine(error)})${served}: ${rebuild}`);
      }
      return;
    }
    $("backend").textContent = `Runs on ${backendLine()}.`;
    setUpControls();
    buildClassChoices();
    bindControls();
    timeAnswers();
    const { settings, ignored } = settingsFromUrl();
    api.state = settings;
    if (ignored.length) {
      say(`Ignored from the link: ${ignored.join("; ")}. Showing the defaults for them.`);
    }
    await request({});
  }

  api.ready = start();
})();
