#!/usr/bin/env node
// Runs the official @millisai/web-sdk in headless Chromium (playwright-core, system Chromium) with a
// WAV file as the microphone, against a Millis-compatible WebSocket server, and prints every SDK
// event and every frame on the wire as one JSON document.
//
//   node run.mjs --url ws://127.0.0.1:PORT/millis --wav input.wav [--seconds 20] [--out events.json]
//
// Exit codes: 0 run completed (end_reason says how: closed | timeout | start_error),
//             1 usage / setup problem (bad arguments, WAV, missing bundle, page failed to load),
//             2 Chromium failed to launch.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

const USAGE = `usage: node run.mjs --url WS_URL --wav FILE.wav [options]
  --url URL                  server endpoint passed to the SDK as config.endPoint (required)
  --wav FILE                 microphone input: RIFF WAV, 16-bit PCM best (8/32-bit, float32 also work),
                             mono or stereo, any rate (required)
  --seconds N                give up after N seconds (default 20); then client.stop() and end_reason "timeout"
  --out FILE                 write the JSON there instead of stdout
  --public-key KEY           default "test-public-key"
  --agent-id ID              default "test-agent" (use --agent-id "" to omit agent_id)
  --agent-config JSON        agent.agent_config object
  --metadata JSON            metadata object
  --include-metadata-in-prompt
  --session-continuation ID  session_continuation.session_id
  --start-arg JSON           pass this verbatim to client.start() instead (overrides the four above)
  --actions JSON             [{"after":"onready"|"start","at_ms":N,"action":"mute"|"unmute"|"stop"|"send","data":...}]
  --stop-after-session-ended-ms N  call client.stop() if the socket is still open N ms after
                             onsessionended (default 2000; -1 never)
  --loop                     loop the WAV (default: play once, then silence)
  --dump-sent-audio FILE     write the raw s16le audio the SDK sent
  --debug                    SDK debug logging; forward all browser console output to stderr
  --no-worklet-fix           do not work around the SDK's AudioWorklet start-up race (see NOTES.md);
                             expect ~1 run in 4 to send no audio at all
  --chromium PATH            browser binary (default $CHROMIUM or /usr/bin/chromium)
  --chromium-arg ARG         extra Chromium switch (repeatable)`;

function parseArgs(rawArgv) {
  // accept both "--opt value" and "--opt=value"
  const argv = rawArgv.flatMap((a) => {
    const m = /^(--[a-z-]+)=(.*)$/s.exec(a);
    return m ? [m[1], m[2]] : [a];
  });
  const o = {
    seconds: 20,
    publicKey: "test-public-key",
    agentId: "test-agent",
    stopAfterSessionEndedMs: 2000,
    chromium: process.env.CHROMIUM || "/usr/bin/chromium",
    extraArgs: [],
  };
  const json = (name, v) => {
    try {
      return JSON.parse(v);
    } catch (e) {
      die(1, `${name}: not valid JSON: ${e.message}`);
    }
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) die(1, `${a} needs a value\n${USAGE}`);
      return argv[++i];
    };
    switch (a) {
      case "--url": o.url = next(); break;
      case "--wav": o.wav = next(); break;
      case "--seconds": o.seconds = Number(next()); break;
      case "--out": o.out = next(); break;
      case "--public-key": o.publicKey = next(); break;
      case "--agent-id": o.agentId = next(); break;
      case "--agent-config": o.agentConfig = json(a, next()); break;
      case "--metadata": o.metadata = json(a, next()); break;
      case "--include-metadata-in-prompt": o.includeMetadataInPrompt = true; break;
      case "--session-continuation": o.sessionContinuation = next(); break;
      case "--start-arg": o.startArg = json(a, next()); break;
      case "--actions": o.actions = json(a, next()); break;
      case "--stop-after-session-ended-ms": o.stopAfterSessionEndedMs = Number(next()); break;
      case "--loop": o.loop = true; break;
      case "--dump-sent-audio": o.dumpSentAudio = next(); break;
      case "--debug": o.debug = true; break;
      case "--no-worklet-fix": o.noWorkletFix = true; break;
      case "--chromium": o.chromium = next(); break;
      case "--chromium-arg": o.extraArgs.push(next()); break;
      case "-h": case "--help": process.stdout.write(USAGE + "\n"); process.exit(0);
      default: die(1, `unknown argument ${a}\n${USAGE}`);
    }
  }
  if (!o.url) die(1, `--url is required\n${USAGE}`);
  if (!o.wav) die(1, `--wav is required\n${USAGE}`);
  if (!(o.seconds > 0)) die(1, "--seconds must be a positive number");
  return o;
}

function die(code, msg) {
  process.stderr.write(`run.mjs: ${msg}\n`);
  process.exit(code);
}

// Chromium's fake capture reads the WAV with its own parser; reject what it cannot use up front
// (a bad file otherwise shows up only as silence or a renderer crash).
function checkWav(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    die(1, `cannot read WAV ${file}: ${e.message}`);
  }
  if (buf.length < 12 || buf.toString("ascii", 0, 4) !== "RIFF" || buf.toString("ascii", 8, 12) !== "WAVE")
    die(1, `${file} is not a RIFF/WAVE file`);
  let off = 12;
  let fmt = null;
  let dataBytes = null;
  while (off + 8 <= buf.length) {
    const id = buf.toString("ascii", off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    if (id === "fmt ") {
      fmt = {
        format: buf.readUInt16LE(off + 8),
        channels: buf.readUInt16LE(off + 10),
        rate: buf.readUInt32LE(off + 12),
        bits: buf.readUInt16LE(off + 22),
      };
    } else if (id === "data") {
      dataBytes = Math.min(size, buf.length - off - 8);
      break;
    }
    off += 8 + size + (size & 1);
  }
  if (!fmt || dataBytes === null) die(1, `${file}: missing fmt or data chunk`);
  // Tested with Chromium 156: PCM 8/16/32-bit and float32 work at any rate, mono or stereo
  // (1 = PCM, 3 = IEEE float, 0xFFFE = WAVE_FORMAT_EXTENSIBLE, which sox writes for 32-bit);
  // 24-bit gives silence, as do a raw PCM file and a missing file (no error from Chromium).
  if (![1, 3, 0xfffe].includes(fmt.format) || ![8, 16, 32].includes(fmt.bits))
    die(1, `${file}: Chromium's fake capture needs 8/16/32-bit PCM or float32 (got format ${fmt.format}, ${fmt.bits} bits); convert with: sox IN -b 16 -e signed-integer OUT.wav`);
  return { ...fmt, seconds: dataBytes / (fmt.channels * 2) / fmt.rate };
}

async function ensureBundle() {
  const bundle = path.join(HERE, "dist", "page.bundle.js");
  const src = path.join(HERE, "src", "page.js");
  const stale = !fs.existsSync(bundle) || fs.statSync(bundle).mtimeMs < fs.statSync(src).mtimeMs;
  if (!stale) return;
  let esbuild;
  try {
    esbuild = await import("esbuild");
  } catch {
    die(1, "dist/page.bundle.js is missing and esbuild is not installed: run ./setup.sh first");
  }
  await esbuild.build(bundleOptions());
}

export function bundleOptions() {
  return {
    entryPoints: [path.join(HERE, "src", "page.js")],
    outfile: path.join(HERE, "dist", "page.bundle.js"),
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "chrome100",
    logLevel: "warning",
  };
}

function serveStatic() {
  const files = {
    "/page.html": ["page.html", "text/html; charset=utf-8"],
    "/dist/page.bundle.js": ["dist/page.bundle.js", "text/javascript; charset=utf-8"],
  };
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, "http://x").pathname;
    const f = files[p];
    if (p === "/favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    if (!f) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": f[1], "cache-control": "no-store" });
    fs.createReadStream(path.join(HERE, f[0])).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const wavPath = path.resolve(o.wav);
  const wavInfo = checkWav(wavPath);
  if (!fs.existsSync(o.chromium)) die(2, `Chromium not found at ${o.chromium}: run ./setup.sh (apt-get install chromium)`);
  await ensureBundle();

  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    die(1, `playwright-core is not installed (${e.message}): run ./setup.sh first`);
  }

  const pageCfg = {
    url: o.url,
    public_key: o.publicKey,
    agent_id: o.agentId === "" ? undefined : o.agentId,
    agent_config: o.agentConfig,
    metadata: o.metadata,
    include_metadata_in_prompt: o.includeMetadataInPrompt,
    session_continuation: o.sessionContinuation,
    start_arg: o.startArg,
    actions: o.actions,
    stop_after_session_ended_ms: o.stopAfterSessionEndedMs,
    dump_sent_audio: !!o.dumpSentAudio,
    debug: !!o.debug,
    worklet_fix: !o.noWorkletFix,
  };

  const fakeAudioArg = `--use-file-for-fake-audio-capture=${wavPath}${o.loop ? "" : "%noloop"}`;
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    fakeAudioArg,
    "--autoplay-policy=no-user-gesture-required",
    "--disable-dev-shm-usage",
    ...o.extraArgs,
  ];

  const server = await serveStatic();
  const origin = `http://127.0.0.1:${server.address().port}`;
  const started = Date.now();
  const consoleLog = [];
  const pageErrors = [];
  let browser;
  const cleanup = async () => {
    try {
      if (browser) await browser.close();
    } catch {}
    server.close();
  };

  try {
    browser = await chromium.launch({
      executablePath: o.chromium,
      headless: true,
      args,
      timeout: 30000,
      env: { ...process.env, CHROME_LOG_FILE: "/dev/null" },
    });
  } catch (e) {
    server.close();
    // drop playwright's echo of the (very long) command line; keep the browser's own output
    const lines = e.message.replace(/\x1b\[[0-9;]*m/g, "").split("\n").filter((l) => l.trim() && !/<launching>|<launched>|^Call log:/.test(l));
    die(2, `Chromium failed to launch (${o.chromium}): ${lines.slice(0, 12).join("\n")}`);
  }

  let result;
  try {
    const context = await browser.newContext();
    await context.grantPermissions(["microphone"], { origin });
    const page = await context.newPage();
    page.on("console", (msg) => {
      const entry = { type: msg.type(), text: msg.text() };
      consoleLog.push(entry);
      if (o.debug || entry.type === "error" || entry.type === "warning")
        process.stderr.write(`[browser ${entry.type}] ${entry.text}\n`);
    });
    page.on("pageerror", (err) => {
      pageErrors.push(String(err.stack || err));
      process.stderr.write(`[browser pageerror] ${err.stack || err}\n`);
    });
    page.on("crash", () => {
      pageErrors.push("page crashed");
      process.stderr.write("[browser] page crashed\n");
    });

    const pageUrl = `${origin}/page.html?cfg=${encodeURIComponent(JSON.stringify(pageCfg))}`;
    await page.goto(pageUrl, { waitUntil: "load", timeout: 15000 });
    const loaded = await page.evaluate(() => typeof window.__harness === "object");
    if (!loaded) throw new Error("page loaded but the harness bundle did not initialise (see browser errors above)");

    const deadline = started + o.seconds * 1000;
    let timedOut = false;
    try {
      await page.waitForFunction(() => window.__harness.done, null, {
        timeout: Math.max(1000, deadline - Date.now()),
        polling: 50,
      });
    } catch (e) {
      if (!/Timeout/i.test(e.message)) throw e;
      timedOut = true;
    }
    if (timedOut) {
      await page.evaluate(() => {
        window.__harness.markTimeout();
        window.__harness.stop("runner timeout");
      });
      // let the close handshake and the SDK's onclose run
      await page.waitForFunction(() => window.__harness.done, null, { timeout: 3000, polling: 50 }).catch(() => {});
    }
    await page.waitForTimeout(100);
    result = await page.evaluate(() => window.__harness.result());
    if (timedOut) result.end_reason = "timeout";
    if (o.dumpSentAudio) {
      const b64 = await page.evaluate(() => window.__harness.sentAudioBase64());
      fs.writeFileSync(o.dumpSentAudio, Buffer.from(b64 || "", "base64"));
    }
    result.browser = { version: browser.version() };
    const sb = result.wire.sent_binary;
    if (sb.frames > 0 && sb.peak_abs_sample === 0)
      process.stderr.write("run.mjs: warning: the SDK sent only silence; is the WAV readable by Chromium?\n");
    if (sb.frames === 0 && result.wire.open_t_ms !== null)
      process.stderr.write("run.mjs: warning: the socket opened but the SDK sent no audio\n");
  } catch (e) {
    await cleanup();
    die(1, `harness failed: ${e.message}`);
  }
  await cleanup();

  const out = {
    harness: "millis-web-sdk-interop",
    wall_ms: Date.now() - started,
    wav: { path: wavPath, ...wavInfo, loop: !!o.loop },
    chromium_args: args,
    ...result,
    console: consoleLog,
    page_errors: pageErrors,
  };
  const text = JSON.stringify(out, null, 2) + "\n";
  if (o.out) fs.writeFileSync(o.out, text);
  else process.stdout.write(text);
}

main().catch((e) => die(1, e.stack || String(e)));
