#!/usr/bin/env bash
# Self-check of the harness against fake_server.py (a scripted stand-in, not our server).
#   PYTHON=/path/to/python-with-websockets ./selfcheck.sh     (run ./setup.sh first)
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
work="$(mktemp -d)"
"$PY" fake_server.py --port 0 --log "$work/server.jsonl" >"$work/server.out" 2>&1 &
srv=$!
trap 'kill "$srv" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q LISTENING "$work/server.out" 2>/dev/null && break; sleep 0.1; done
port="$(awk '/LISTENING/{print $2}' "$work/server.out")"
[ -n "$port" ] || { cat "$work/server.out" >&2; echo "selfcheck: fake server did not start" >&2; exit 1; }
node run.mjs --url "ws://127.0.0.1:$port/millis" --wav fixtures/hello_weather_16k.wav --seconds 20 --out "$work/events.json"
"$PY" - "$work/events.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1])); s = d["summary"]
checks = {
    "ended by server close": d["end_reason"] == "closed" and s["close_code"] == 1000,
    "initiate": s["initiate"] == {"method": "initiate", "data": {"public_key": "test-public-key", "agent": {"agent_id": "test-agent"}}},
    "onready with session_id": s["session_id"] == "s-1",
    "mic audio sent, 256-byte frames": s["audio_bytes_sent"] > 0 and set(d["wire"]["sent_binary"]["sizes"]) == {"256"},
    "mic audio not silent": d["wire"]["sent_binary"]["peak_abs_sample"] > 1000,
    "transcript": s["transcripts"] == [{"text": "hello", "payload": {"is_final": True}}],
    "response text": s["response_texts"] == [{"text": "Hi there", "payload": {"is_final": True}}],
    "agent audio": s["audio_bytes_received"] == 32000 and s["onaudio_events"] == s["audio_frames_received"],
    "agent states": s["agent_states"][:4] == ["idle", "prepare_answer", "answer", "idle"],
    "latency": len(s["latencies_ms"]) == 1 and s["latencies_ms"][0] > 0,
    "onsessionended": s["session_ended"],
}
for k, ok in checks.items():
    print(("ok   " if ok else "FAIL ") + k)
failed = sum(not ok for ok in checks.values())
print(f"{len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PYEOF
