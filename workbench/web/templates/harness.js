// workbench web harness: load onnxruntime-web from this folder, try the execution providers
// of harness.manifest.json in order, run inputs.example.json and publish what happened in
// window.workbenchTelemetry (schema workbench_web_telemetry_v1). Everything shown on the page
// comes from JSON files and is inserted as text, never as HTML.

const telemetry = {
  schema: 'workbench_web_telemetry_v1',
  status: 'running',
  error: null,
  missing_op: null,
  ort_version: null,
  cross_origin_isolated: self.crossOriginIsolated === true,
  providers_requested: [],
  providers_tried: [],
  provider_used: null,
  fallback_reasons: {},
  load_ms: null,
  run_ms: null,
  warm_run_ms: null,
  outputs: Object.create(null),  // keyed by the model's output names: no inherited keys (constructor, __proto__)
  generation: null,
};
window.workbenchTelemetry = telemetry;

// A test driver may expose window.workbenchPublishTelemetry to receive snapshots as the page
// progresses, so it still learns how far the page got when the page later hangs.
function publish() {
  if (typeof window.workbenchPublishTelemetry === 'function') {
    window.workbenchPublishTelemetry(JSON.parse(JSON.stringify(telemetry)));
  }
}

const SAMPLE_SIZE = 8;
// How onnxruntime names an operator it has no kernel for (session creation errors).
const MISSING_OP_PATTERNS = [
  /No Op registered for (\w+)/,
  /Could not find an implementation for (\w+)/,
  /[Oo]perator ['"]?(\w+)['"]? is not (?:supported|implemented)/,
];
const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);
// Float16Array is undefined before Chromium 135 / Firefox 129 / Safari 18.2; onnxruntime-web then holds float16
// tensors as their bits in a Uint16Array, which halfBitsToNumber and numberToHalfBits read and write.
const HAS_FLOAT16 = typeof globalThis.Float16Array === 'function';
const TYPED_ARRAYS = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, uint8: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  int64: BigInt64Array, uint64: BigUint64Array, bool: Uint8Array,
  float16: HAS_FLOAT16 ? globalThis.Float16Array : Uint16Array,
};

// The value of IEEE binary16 bits (exact: every float16 is a float32 and a double).
function halfBitsToNumber(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;  // zero and subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

function roundHalfToEven(x) {
  const whole = Math.floor(x);
  const rest = x - whole;
  return rest > 0.5 || (rest === 0.5 && whole % 2 === 1) ? whole + 1 : whole;
}

// The binary16 bits nearest a number, ties to even (as Float16Array.from and numpy round), from the double
// itself: rounded once, never through float32 first.
function numberToHalfBits(value) {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  if (magnitude >= 65520) return sign | 0x7c00;  // 65504 + half its step: rounds to infinity
  if (magnitude < 2 ** -14) return sign | roundHalfToEven(magnitude / 2 ** -24);  // subnormal (1024: the least normal)
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent -= 1;  // log2 may round across a power of two
  else if (2 ** (exponent + 1) <= magnitude) exponent += 1;
  const units = roundHalfToEven(magnitude / 2 ** (exponent - 10));  // 1024..2048; 2048 carries into the exponent
  return sign | (((exponent + 15) << 10) + units - 1024);
}

// A tensor's values as numbers (float16 bits decoded when the browser has no Float16Array), else its data.
function tensorValues(tensor) {
  const data = tensor.data;
  if (tensor.type !== 'float16' || !(data instanceof Uint16Array)) return data;
  if (HAS_FLOAT16) return new globalThis.Float16Array(data.buffer, data.byteOffset, data.length);
  return Float32Array.from(data, halfBitsToNumber);
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = String(text);
  row.appendChild(td);
}

function addRow(tableId, values) {
  const row = document.createElement('tr');
  values.forEach((v) => cell(row, v));
  document.querySelector(`#${tableId} tbody`).appendChild(row);
}

function setStatus(status, error) {
  telemetry.status = status;
  const el = document.getElementById('status');
  el.textContent = status === 'ok' ? 'ok' : status;
  el.className = status;
  if (error) {
    telemetry.error = error;
    const match = MISSING_OP_PATTERNS.map((pattern) => pattern.exec(error)).find((m) => m);
    if (match) telemetry.missing_op = match[1];
    document.getElementById('error').textContent = error;
  }
  publish();
}

function errorText(e) {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url} failed: HTTP ${response.status}`);
  return response.json();
}

function toTensor(ort, spec) {
  const Typed = TYPED_ARRAYS[spec.dtype];
  if (!Typed) throw new Error(`unsupported dtype ${spec.dtype}`);
  let data;
  // 64-bit integers beyond 2^53 come as decimal strings: BigInt reads them exactly
  if (spec.dtype === 'int64' || spec.dtype === 'uint64') data = Typed.from(spec.data, (v) => BigInt(v));
  else if (spec.dtype === 'bool') data = Typed.from(spec.data, (v) => (v ? 1 : 0));
  else if (spec.dtype === 'float16' && !HAS_FLOAT16) data = Uint16Array.from(spec.data, (v) => numberToHalfBits(Number(v)));
  else data = Typed.from(spec.data, (v) => (typeof v === 'string' ? Number(v) : v));
  return new ort.Tensor(spec.dtype, data, spec.shape);
}

function tensorNumbers(tensor) {
  // a 64-bit integer a double cannot hold exactly is reported as a decimal string
  const exact = (v) => (v >= -MAX_EXACT && v <= MAX_EXACT ? Number(v) : v.toString());
  return Array.from(tensorValues(tensor), (v) => (typeof v === 'bigint' ? exact(v) : Number(v)));
}

async function webgpuUnavailableReason() {
  if (!('gpu' in navigator) || !navigator.gpu) {
    return 'navigator.gpu is undefined: this browser has WebGPU disabled or unsupported';
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return 'navigator.gpu.requestAdapter() returned null: no usable GPU adapter';
  } catch (e) {
    return `navigator.gpu.requestAdapter() failed: ${errorText(e)}`;
  }
  return null;
}

async function createSession(ort, manifest, provider) {
  const options = { executionProviders: [provider], graphOptimizationLevel: 'all' };
  const external = manifest.model.external_data || [];
  if (external.length > 0) {
    options.externalData = external.map((f) => ({ path: f.file, data: f.file }));
  }
  return ort.InferenceSession.create(manifest.model.file, options);
}

async function loadWithFallback(ort, manifest) {
  let lastError = null;
  for (const provider of manifest.providers) {
    telemetry.providers_tried.push(provider);
    if (provider === 'webgpu') {
      const reason = await webgpuUnavailableReason();
      if (reason) {
        telemetry.fallback_reasons[provider] = reason;
        addRow('providers', [provider, `unavailable: ${reason}`]);
        publish();
        continue;
      }
    }
    const start = performance.now();
    try {
      const session = await createSession(ort, manifest, provider);
      telemetry.load_ms = performance.now() - start;
      telemetry.provider_used = provider;
      addRow('providers', [provider, 'used']);
      addRow('timings', ['load model + create session', telemetry.load_ms.toFixed(1)]);
      publish();
      return session;
    } catch (e) {
      lastError = errorText(e);
      telemetry.fallback_reasons[provider] = `session creation failed: ${lastError}`;
      addRow('providers', [provider, `failed: ${lastError}`]);
      publish();
    }
  }
  throw new Error(`no execution provider could load the model; last error: ${lastError ?? 'none tried'}`);
}

function maxAbsError(actual, expected) {
  const want = expected.data.map((v) => (typeof v === 'string' ? Number(v) : Number(v)));
  if (actual.length !== want.length) return NaN;
  let worst = 0;
  for (let i = 0; i < want.length; i += 1) {
    const a = Number(actual[i]);
    const b = want[i];
    if (Number.isNaN(a) && Number.isNaN(b)) continue;
    if (a === b) continue;
    worst = Math.max(worst, Math.abs(a - b));
  }
  return worst;
}

// An expected output the manifest keeps in a file (one over 2^20 elements): its raw little-endian values.
async function fetchExpected(entry) {
  const Typed = TYPED_ARRAYS[entry.dtype];
  if (!Typed) throw new Error(`expected output file ${entry.file}: unsupported dtype ${entry.dtype}`);
  const response = await fetch(`./${entry.file}`);
  if (!response.ok) throw new Error(`fetching ${entry.file} failed: HTTP ${response.status}`);
  const values = new Typed(await response.arrayBuffer());
  return entry.dtype === 'float16' && !HAS_FLOAT16 ? Float32Array.from(values, halfBitsToNumber) : values;
}

// Compare an output with its expected values here, element by element, without sending the values back:
// the largest |difference| (a NaN against a number is Infinity, sent as the string 'Infinity' since JSON has
// no Infinity; NaN against NaN and equal values count 0), the flat index where it is, how many differ.
function compareInPage(tensor, want) {
  const actual = tensorValues(tensor);
  if (actual.length !== want.length) {
    return { elements: actual.length, max_abs_error: 'Infinity', worst_index: -1, differing: actual.length };
  }
  let worst = 0;
  let at = -1;
  let differing = 0;
  for (let i = 0; i < want.length; i += 1) {
    const a = actual[i];
    const b = want[i];
    if (a === b) continue;
    let d;
    if (typeof a === 'bigint') d = Number(a > b ? a - b : b - a);
    else if (Number.isNaN(a) && Number.isNaN(b)) continue;
    else d = Math.abs(Number(a) - Number(b));
    if (Number.isNaN(d)) d = Infinity;
    differing += 1;
    if (at < 0 || d > worst) {
      worst = d;
      at = i;
    }
  }
  return {
    elements: want.length, max_abs_error: worst === Infinity ? 'Infinity' : worst, worst_index: at, differing,
  };
}

function sampleOf(tensor) {
  return tensorNumbers({ type: tensor.type, data: tensor.data.slice(0, SAMPLE_SIZE) });
}

// The model's own entry of an object keyed by its value names: never an inherited property (a value named
// 'constructor' or 'toString'), undefined when absent.
function own(table, name) {
  return table && Object.prototype.hasOwnProperty.call(table, name) ? table[name] : undefined;
}

async function runExample(ort, manifest, session, examples) {
  const feeds = Object.create(null);  // an input named '__proto__' is a key here, not the object's prototype
  for (const spec of manifest.inputs) feeds[spec.name] = toTensor(ort, own(examples.inputs, spec.name));
  let start = performance.now();
  const results = await session.run(feeds);
  telemetry.run_ms = performance.now() - start;
  start = performance.now();
  await session.run(feeds);
  telemetry.warm_run_ms = performance.now() - start;
  addRow('timings', ['first run', telemetry.run_ms.toFixed(2)]);
  addRow('timings', ['second run', telemetry.warm_run_ms.toFixed(2)]);
  for (const spec of manifest.outputs) {
    const tensor = own(results, spec.name);
    if (tensor === undefined) {
      throw new Error(`onnxruntime-web returned no output named ${JSON.stringify(spec.name)}`
        + (spec.name === '__proto__' ? ' (its results object cannot hold that name as a key); rename the output' : ''));
    }
    const expected = own(manifest.expected_outputs, spec.name);
    const record = { dtype: tensor.type, shape: Array.from(tensor.dims), sample: sampleOf(tensor), data: null };
    let err = 'n/a';
    if (expected && expected.file) {  // too large to send back: compared here
      record.comparison = compareInPage(tensor, await fetchExpected(expected));
      err = Number(record.comparison.max_abs_error).toExponential(2);
    } else {
      record.data = tensorNumbers(tensor);
      if (expected) err = maxAbsError(record.data, expected).toExponential(2);
    }
    telemetry.outputs[spec.name] = record;
    addRow('outputs', [spec.name, record.dtype, JSON.stringify(record.shape),
      record.sample.map((v) => Number(Number(v).toPrecision(5))).join(', '), err]);
  }
}

function argmaxLastRow(tensor) {
  const dims = tensor.dims;
  const vocab = dims[dims.length - 1];
  const values = tensorValues(tensor);
  const offset = values.length - vocab;
  let best = 0;
  for (let i = 1; i < vocab; i += 1) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}

async function runGeneration(ort, manifest, session) {
  const spec = manifest.generation;
  const tokens = spec.prompt.slice();
  const generated = [];
  const start = performance.now();
  for (let step = 0; step < spec.steps; step += 1) {
    const ids = spec.input_dtype === 'int32'
      ? Int32Array.from(tokens) : BigInt64Array.from(tokens, (v) => BigInt(v));
    const feeds = { [spec.input]: new ort.Tensor(spec.input_dtype, ids, [1, tokens.length]) };
    const results = await session.run(feeds);
    const next = argmaxLastRow(own(results, spec.output));
    tokens.push(next);
    generated.push(next);
  }
  telemetry.generation = { prompt: spec.prompt, tokens: generated, ms: performance.now() - start };
  document.getElementById('generation-section').hidden = false;
  addRow('generation', [spec.prompt.join(' '), generated.join(' '), (spec.expected_tokens || []).join(' ')]);
  addRow('timings', [`greedy generation (${spec.steps} tokens)`, telemetry.generation.ms.toFixed(1)]);
}

async function main() {
  const manifest = await fetchJson('./harness.manifest.json');
  document.getElementById('model-name').textContent = manifest.model.file;
  telemetry.providers_requested = manifest.providers.slice();
  if (!/^ort\.[a-z.]+\.mjs$/.test(manifest.runtime.entry)) {
    throw new Error(`unexpected runtime entry ${manifest.runtime.entry}`);
  }
  const ort = await import(`./${manifest.runtime.entry}`);
  telemetry.ort_version = ort.env.versions ? ort.env.versions.web : null;
  ort.env.wasm.wasmPaths = new URL('./', window.location.href).href;
  ort.env.logLevel = 'error';
  const examples = await fetchJson(`./${manifest.example_inputs}`);
  const session = await loadWithFallback(ort, manifest);
  await runExample(ort, manifest, session, examples);
  if (manifest.generation) await runGeneration(ort, manifest, session);
  setStatus('ok');
}

window.addEventListener('unhandledrejection', (event) => {
  if (telemetry.status === 'running') setStatus('error', errorText(event.reason));
});
main().catch((e) => setStatus('error', errorText(e)));
