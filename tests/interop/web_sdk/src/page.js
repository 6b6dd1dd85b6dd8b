// Browser side of the interop harness. Bundled by esbuild into dist/page.bundle.js.
//
// It runs the official @millisai/web-sdk unmodified. The only instrumentation is
//   * a WebSocket subclass installed as window.WebSocket (records every frame on the wire), and
//   * a wrapper around the client instance's emit() (records every SDK event, including
//     server methods the SDK re-emits under their own name, e.g. onfunction or open_web_form).
//
// Configuration comes from the `cfg` query parameter (URL-encoded JSON), see run.mjs.

import Millis from "@millisai/web-sdk";
import sdkPkg from "@millisai/web-sdk/package.json";

const t = () => Math.round(performance.now() * 10) / 10;

const params = new URLSearchParams(location.search);
const cfg = JSON.parse(params.get("cfg") || "{}");

const events = [];
const wire = {
  url: null,
  constructed_t_ms: null,
  open_t_ms: null,
  sent_text: [],
  received_text: [],
  received_binary: [],
  sent_binary: {
    frames: 0,
    bytes: 0,
    sizes: {}, // byte length -> count
    first_t_ms: null,
    last_t_ms: null,
    frames_before_server_onready: 0,
    zero_frames: 0, // frames whose samples are all 0 (muted or silent mic)
    peak_abs_sample: 0,
    first_frames_t_ms: [], // timestamps of the first 10 frames, to show the cadence
  },
  close: null,
  error: null,
};
let serverReadySeen = false;
let done = false;
let endReason = null;
let dumpChunks = cfg.dump_sent_audio ? [] : null;

function ser(v, depth = 0) {
  if (v === undefined) return { type: "undefined" };
  if (v === null || typeof v === "number" || typeof v === "string" || typeof v === "boolean") return v;
  if (depth > 4) return { type: "truncated" };
  if (v instanceof Uint8Array || v instanceof ArrayBuffer) return { type: v.constructor.name, bytes: v.byteLength };
  if (typeof CloseEvent !== "undefined" && v instanceof CloseEvent)
    return { type: "CloseEvent", code: v.code, reason: v.reason, wasClean: v.wasClean };
  if (typeof Event !== "undefined" && v instanceof Event) return { type: v.constructor.name, event_type: v.type };
  if (typeof AnalyserNode !== "undefined" && v instanceof AnalyserNode)
    return { type: "AnalyserNode", context_sample_rate: v.context.sampleRate, context_state: v.context.state };
  if (typeof MediaStream !== "undefined" && v instanceof MediaStream)
    return {
      type: "MediaStream",
      tracks: v.getTracks().map((tr) => ({ kind: tr.kind, label: tr.label, settings: tr.getSettings() })),
    };
  if (Array.isArray(v)) return v.map((x) => ser(x, depth + 1));
  if (typeof v === "object") {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return { type: (v.constructor && v.constructor.name) || "object" };
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = ser(x, depth + 1);
    return out;
  }
  return { type: typeof v };
}

function record(name, args) {
  events.push({ t_ms: t(), name, args: args.map((a) => ser(a)) });
}

function parseJson(raw) {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

// ---- wire recorder -------------------------------------------------------------------------
const NativeWebSocket = window.WebSocket;
class RecordingWebSocket extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    wire.url = String(url);
    wire.constructed_t_ms = t();
    this.addEventListener("open", () => (wire.open_t_ms = t()));
    this.addEventListener("message", (ev) => {
      if (typeof ev.data === "string") {
        const json = parseJson(ev.data);
        wire.received_text.push({ t_ms: t(), raw: ev.data, json });
        if (json && json.method === "onready") serverReadySeen = true;
      } else {
        const n = ev.data.byteLength !== undefined ? ev.data.byteLength : ev.data.size;
        wire.received_binary.push({ t_ms: t(), bytes: n });
      }
    });
    this.addEventListener("close", (ev) => {
      wire.close = { t_ms: t(), code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
    });
    this.addEventListener("error", () => (wire.error = { t_ms: t() }));
  }
  send(data) {
    if (typeof data === "string") {
      wire.sent_text.push({ t_ms: t(), raw: data, json: parseJson(data), ready_state: this.readyState });
    } else {
      const u8 = data instanceof Uint8Array ? data : new Uint8Array(data.buffer || data);
      const s = wire.sent_binary;
      const now = t();
      s.frames += 1;
      s.bytes += u8.byteLength;
      s.sizes[u8.byteLength] = (s.sizes[u8.byteLength] || 0) + 1;
      if (s.first_t_ms === null) s.first_t_ms = now;
      s.last_t_ms = now;
      if (s.first_frames_t_ms.length < 10) s.first_frames_t_ms.push(now);
      if (!serverReadySeen) s.frames_before_server_onready += 1;
      const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
      let peak = 0;
      for (let i = 0; i + 1 < u8.byteLength; i += 2) {
        const a = Math.abs(dv.getInt16(i, true));
        if (a > peak) peak = a;
      }
      if (peak === 0) s.zero_frames += 1;
      if (peak > s.peak_abs_sample) s.peak_abs_sample = peak;
      if (dumpChunks) dumpChunks.push(u8.slice());
    }
    return super.send(data);
  }
}
window.WebSocket = RecordingWebSocket;

// ---- AudioWorklet watcher / start-up race workaround ------------------------------------------
// SDK bug (src/audio/worker/AudioWorklet.ts + src/audio/service.ts): the SDK creates its
// "capture-and-playback-processor" AudioWorkletNode and only afterwards connects the microphone
// to it. If the audio thread runs process() in between, inputs[0] has no channels,
// convertFloat32ToUint8(undefined) throws, and Chromium stops that processor for good: no
// microphone audio is ever sent and no agent audio is played (seen in ~1 of 4 headless runs).
// The same happens one step later if the first input is mono: the output then has one channel
// and process() throws on `outputChannel2[i] = 0` (the processor writes two output channels).
// Workaround (cfg.worklet_fix, on by default): right after the SDK's node is constructed, connect
// an already-started silent source upmixed to stereo (ConstantSourceNode(0) -> 2-channel
// GainNode), so from the first render quantum the input, and so the output, has two channels.
// Adding 0.0 leaves the microphone samples bit-identical (the mic alone already gives the node
// two channels when the race is lost the other way, which is why the SDK works most of the time).
// The SDK never listens for the failure; we record it (processorerror) and, independently,
// run.mjs warns when no audio was sent at all.
const NativeAudioWorkletNode = window.AudioWorkletNode;
if (NativeAudioWorkletNode) {
  window.AudioWorkletNode = class extends NativeAudioWorkletNode {
    constructor(ctx, name, options) {
      let silent = null;
      if (cfg.worklet_fix !== false) {
        const zero = new ConstantSourceNode(ctx, { offset: 0 });
        silent = new GainNode(ctx, { gain: 1, channelCount: 2, channelCountMode: "explicit" });
        zero.connect(silent);
        zero.start();
      }
      super(ctx, name, options);
      if (silent) silent.connect(this);
      record("harness:worklet_created", [
        { name, options: options || null, sample_rate: ctx.sampleRate, silent_input_workaround: !!silent },
      ]);
      this.addEventListener("processorerror", (ev) => {
        record("harness:worklet_processorerror", [{ name, message: ev.message || null }]);
        console.error(`AudioWorklet processor "${name}" threw; capture and playback have stopped`);
      });
    }
  };
}

// ---- audio probes ----------------------------------------------------------------------------
// Every 500 ms: is the AudioContext running, does the microphone deliver sound (user analyser),
// does the worklet output anything (the SDK's output analyser), how many frames went out.
const probes = [];
let micAnalyser = null;
let outAnalyser = null;
function peakOf(an) {
  if (!an) return null;
  const buf = new Float32Array(an.fftSize);
  an.getFloatTimeDomainData(buf);
  let p = 0;
  for (const x of buf) p = Math.max(p, Math.abs(x));
  return Math.round(p * 1000) / 1000;
}
const probeTimer = setInterval(() => {
  const ctx = (micAnalyser || outAnalyser || {}).context;
  probes.push({
    t_ms: t(),
    ctx_state: ctx ? ctx.state : null,
    ctx_time_s: ctx ? Math.round(ctx.currentTime * 1000) / 1000 : null,
    mic_peak: peakOf(micAnalyser),
    out_peak: peakOf(outAnalyser),
    sent_frames: wire.sent_binary.frames,
  });
}, 500);

// ---- SDK client ----------------------------------------------------------------------------
const clientConfig = { publicKey: cfg.public_key ?? "test-public-key", debug: !!cfg.debug };
if (cfg.url) clientConfig.endPoint = cfg.url; // the SDK's option for the server URL
const client = Millis.createClient(clientConfig);

// Record every event the SDK emits (known callbacks and re-emitted unknown server methods).
const origEmit = client.emit.bind(client);
client.emit = (name, ...args) => {
  record(name, args);
  try {
    return origEmit(name, ...args);
  } finally {
    onSdkEvent(name, args);
  }
};

let readyAt = null;
let sessionEndedTimer = null;

function finish(reason) {
  if (done) return;
  done = true;
  endReason = reason;
  clearInterval(probeTimer);
  record("harness:done", [reason]);
}

function onSdkEvent(name, args) {
  if (name === "useraudioready" && args[0]) micAnalyser = args[0].analyser;
  if (name === "analyzer") outAnalyser = args[0];
  if (name === "onready" && readyAt === null) {
    readyAt = performance.now();
    scheduleActions("onready");
  }
  if (name === "onsessionended") {
    const grace = cfg.stop_after_session_ended_ms ?? 2000;
    if (grace >= 0 && sessionEndedTimer === null) {
      sessionEndedTimer = setTimeout(() => {
        if (!done) {
          record("harness:stop", ["socket still open after onsessionended; calling client.stop() like an app would"]);
          client.stop();
        }
      }, grace);
    }
  }
  if (name === "onclose") finish("closed");
}

function runAction(a) {
  record("harness:action", [a]);
  switch (a.action) {
    case "mute":
      return client.mute();
    case "unmute":
      return client.unmute();
    case "stop":
      return client.stop();
    case "send":
      return client.send(typeof a.data === "string" ? a.data : JSON.stringify(a.data));
    default:
      record("harness:error", ["unknown action " + a.action]);
  }
}

function scheduleActions(anchor) {
  for (const a of cfg.actions || []) {
    if ((a.after || "onready") === anchor) setTimeout(() => runAction(a), a.at_ms || 0);
  }
}

function buildStartArg() {
  if (cfg.start_arg !== undefined) return cfg.start_arg; // passed to client.start() verbatim
  const agent = {};
  if (cfg.agent_id !== undefined && cfg.agent_id !== null) agent.agent_id = cfg.agent_id;
  if (cfg.agent_config) agent.agent_config = cfg.agent_config;
  const p = { agent };
  if (cfg.metadata) p.metadata = cfg.metadata;
  if (cfg.include_metadata_in_prompt) p.include_metadata_in_prompt = true;
  if (cfg.session_continuation) p.session_continuation = { session_id: cfg.session_continuation };
  return p;
}

function b64(chunks) {
  let total = 0;
  for (const c of chunks) total += c.byteLength;
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.byteLength;
  }
  let s = "";
  for (let i = 0; i < all.length; i += 0x8000) s += String.fromCharCode.apply(null, all.subarray(i, i + 0x8000));
  return btoa(s);
}

window.__harness = {
  get done() {
    return done;
  },
  stop(reason) {
    record("harness:stop", [reason || "requested by runner"]);
    client.stop();
  },
  markTimeout() {
    if (!done) endReason = "timeout";
  },
  sentAudioBase64() {
    return dumpChunks ? b64(dumpChunks) : null;
  },
  result() {
    const byName = (n) => events.filter((e) => e.name === n);
    const readyEv = byName("onready")[0];
    const summary = {
      session_id: readyEv && readyEv.args[0] && readyEv.args[0].session_id ? readyEv.args[0].session_id : null,
      sdk_onready_t_ms: readyEv ? readyEv.t_ms : null,
      server_onready_t_ms: (wire.received_text.find((m) => m.json && m.json.method === "onready") || {}).t_ms ?? null,
      initiate: (wire.sent_text.find((m) => m.json && m.json.method === "initiate") || {}).json ?? null,
      agent_states: byName("onagentstate").map((e) => e.args[0]),
      latencies_ms: byName("onlatency").map((e) => e.args[0]),
      transcripts: byName("ontranscript").map((e) => ({ text: e.args[0], payload: e.args[1] })),
      response_texts: byName("onresponsetext").map((e) => ({ text: e.args[0], payload: e.args[1] })),
      functions: byName("onfunction").map((e) => ({ data: e.args[0], payload: e.args[1] })),
      session_ended: byName("onsessionended").length > 0,
      audio_frames_received: wire.received_binary.length,
      audio_bytes_received: wire.received_binary.reduce((a, b) => a + b.bytes, 0),
      onaudio_events: byName("onaudio").length,
      audio_frames_sent: wire.sent_binary.frames,
      audio_bytes_sent: wire.sent_binary.bytes,
      pings_sent: wire.sent_text.filter((m) => m.json && m.json.method === "ping").length,
      pongs_received: wire.received_text.filter((m) => m.json && m.json.method === "pong").length,
      close_code: wire.close ? wire.close.code : null,
      close_reason: wire.close ? wire.close.reason : null,
      errors: byName("onerror").length,
      event_names: [...new Set(events.map((e) => e.name))],
    };
    return {
      end_reason: endReason,
      sdk: { name: sdkPkg.name, version: sdkPkg.version },
      user_agent: navigator.userAgent,
      time_origin_epoch_ms: performance.timeOrigin,
      page_config: cfg,
      summary,
      events,
      wire,
      probes,
    };
  },
};

(async () => {
  record("harness:start", [{ endPoint: clientConfig.endPoint, publicKey: clientConfig.publicKey }]);
  scheduleActions("start");
  try {
    await client.start(buildStartArg());
    record("harness:started", []);
  } catch (e) {
    record("harness:start_error", [String((e && e.message) || e)]);
    console.error("client.start() failed: " + ((e && e.stack) || e));
    finish("start_error");
  }
})();
