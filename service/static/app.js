// The sparsewave page: speak, transcribe (file or microphone), piano roll.
// Plain browser APIs only (fetch, MediaRecorder, Web Audio, canvas); no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("sparsewave-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("sparsewave-key", keyInput.value); loadModels(); });

function headers() {
  return keyInput.value ? { Authorization: "Bearer " + keyInput.value } : {};
}

function say(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function failure(resp) {
  try { return (await resp.json()).error.message; } catch (e) { return resp.status + " " + resp.statusText; }
}

let models = [];

function fill(select, items) {
  // a reload of the list (e.g. after the key changes) keeps what the user picked
  const kept = select.value;
  select.replaceChildren(...items.map((m) => new Option(m.id, m.id)));
  if (items.some((m) => m.id === kept)) select.value = kept;
}

function fillVoices() {
  const model = models.find((m) => m.id === $("tts-model").value);
  const voices = (model && model.voices) || [];
  $("tts-voice").replaceChildren(...(voices.length ? voices : ["default"]).map((v) => new Option(v, v)));
}

async function loadModels() {
  const resp = await fetch("/v1/models", { headers: headers() });
  if (!resp.ok) { say("server-status", await failure(resp), true); return; }
  models = (await resp.json()).data;
  fill($("tts-model"), models.filter((m) => m.kind === "tts"));
  fill($("asr-model"), models.filter((m) => m.kind === "asr"));
  fill($("piano-model"), models.filter((m) => m.kind === "piano"));
  fillVoices();
  say("server-status", models.length + " model(s) loaded");
  document.body.dataset.ready = "1";
}
$("tts-model").addEventListener("change", fillVoices);

// --- text to speech ---------------------------------------------------------
$("tts-go").addEventListener("click", async () => {
  const voice = $("tts-voice").value;
  const body = { model: $("tts-model").value, input: $("tts-text").value, response_format: "wav",
                 speed: parseFloat($("tts-speed").value) || 1 };
  if (voice !== "default") body.voice = voice;
  say("tts-status", "synthesizing...");
  const t0 = performance.now();
  const resp = await fetch("/v1/audio/speech", { method: "POST", body: JSON.stringify(body),
                                                 headers: { ...headers(), "Content-Type": "application/json" } });
  if (!resp.ok) { say("tts-status", await failure(resp), true); return; }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const audio = $("tts-audio");
  audio.src = url;
  $("tts-download").href = url;
  $("tts-download").hidden = false;
  const rate = parseInt(resp.headers.get("x-sample-rate") || "0", 10);
  const seconds = rate ? (blob.size - 44) / 2 / rate : 0;
  say("tts-status", `${seconds.toFixed(2)} s of audio in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  audio.play().catch(() => {});
});

// --- speech to text ---------------------------------------------------------
let recorded = null;  // a wav Blob from the microphone
let recorder = null;

function wavFromBuffer(buffer) {
  // AudioBuffer -> 16-bit mono wav Blob (channels averaged)
  const n = buffer.length, rate = buffer.sampleRate, out = new DataView(new ArrayBuffer(44 + 2 * n));
  const mono = new Float32Array(n);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  const text = (o, s) => { for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); out.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, rate, true); out.setUint32(28, rate * 2, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); text(36, "data"); out.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) out.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, mono[i])) * 32767, true);
  return new Blob([out.buffer], { type: "audio/wav" });
}

$("asr-record").addEventListener("click", async () => {
  const button = $("asr-record");
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
  catch (e) { say("asr-status", "no microphone: " + e.message, true); return; }
  const parts = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => parts.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    button.textContent = "Record";
    button.classList.remove("recording");
    // MediaRecorder gives webm/ogg; the server reads wav, so decode here and send wav
    const context = new AudioContext();
    try {
      const decoded = await context.decodeAudioData(await new Blob(parts).arrayBuffer());
      recorded = wavFromBuffer(decoded);
      $("asr-file").value = "";
      $("asr-audio").src = URL.createObjectURL(recorded);
      $("asr-audio").hidden = false;
      say("asr-status", `recorded ${decoded.duration.toFixed(1)} s`);
    } catch (e) { say("asr-status", "could not read the recording: " + e.message, true); }
    context.close();
  };
  recorder.start();
  button.textContent = "Stop";
  button.classList.add("recording");
  say("asr-status", "recording...");
});

$("asr-file").addEventListener("change", () => {
  recorded = null;
  const file = $("asr-file").files[0];
  if (file) { $("asr-audio").src = URL.createObjectURL(file); $("asr-audio").hidden = false; }
});

function showWords(result) {
  const text = $("asr-text"), rows = $("asr-words").querySelector("tbody"), audio = $("asr-audio");
  text.replaceChildren();
  rows.replaceChildren();
  for (const w of result.words || []) {
    const span = document.createElement("span");
    span.textContent = w.word;
    span.title = `${w.start.toFixed(2)}-${w.end.toFixed(2)} s`;
    span.dataset.start = w.start;
    span.dataset.end = w.end;
    span.addEventListener("click", () => { audio.currentTime = w.start; audio.play().catch(() => {}); });
    text.append(span, " ");
    const row = rows.insertRow();
    [w.word, w.start.toFixed(2), w.end.toFixed(2), (w.confidence ?? 1).toFixed(2)].forEach((v) => {
      row.insertCell().textContent = v;
    });
  }
  if (!(result.words || []).length) text.textContent = result.text;
  $("asr-words").hidden = !(result.words || []).length;
}

$("asr-audio").addEventListener("timeupdate", () => {
  const t = $("asr-audio").currentTime;
  for (const span of $("asr-text").querySelectorAll("span")) {
    span.classList.toggle("playing", t >= +span.dataset.start && t < +span.dataset.end);
  }
});

$("asr-go").addEventListener("click", async () => {
  const file = recorded || $("asr-file").files[0];
  if (!file) { say("asr-status", "choose a file or record first", true); return; }
  const form = new FormData();
  form.append("file", file, recorded ? "recording.wav" : file.name);
  form.append("model", $("asr-model").value);
  form.append("response_format", "verbose_json");
  form.append("timestamp_granularities[]", "word");
  say("asr-status", "transcribing...");
  const resp = await fetch("/v1/audio/transcriptions", { method: "POST", body: form, headers: headers() });
  if (!resp.ok) { say("asr-status", await failure(resp), true); return; }
  const result = await resp.json();
  showWords(result);
  say("asr-status", `${result.duration.toFixed(2)} s of audio, ${(result.words || []).length} word(s)`);
});

// --- piano ------------------------------------------------------------------
function pianoForm(format) {
  const form = new FormData();
  form.append("file", $("piano-file").files[0]);
  form.append("model", $("piano-model").value);
  form.append("response_format", format);
  return form;
}

function drawRoll(notes, duration) {
  const canvas = $("piano-roll"), g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, keyH = h / 88, end = Math.max(duration, 0.1);
  g.fillStyle = "#10151c";
  g.fillRect(0, 0, w, h);
  for (let p = 21; p <= 108; p++) {  // black-key lanes a shade darker
    if ([1, 3, 6, 8, 10].includes(p % 12)) { g.fillStyle = "#0b0f14"; g.fillRect(0, (108 - p) * keyH, w, keyH); }
  }
  g.fillStyle = "#2a323c";
  for (let s = 0; s < end; s += 1) g.fillRect((s / end) * w, 0, 1, h);
  for (const n of notes) {
    const light = 35 + (n.velocity / 127) * 35;
    g.fillStyle = `hsl(${200 + (n.pitch % 12) * 12}, 80%, ${light}%)`;
    g.fillRect((n.onset / end) * w, (108 - n.pitch) * keyH, Math.max(2, ((n.offset - n.onset) / end) * w), keyH);
  }
  canvas.dataset.notes = String(notes.length);
}

$("piano-go").addEventListener("click", async () => {
  if (!$("piano-file").files[0]) { say("piano-status", "choose a file first", true); return; }
  say("piano-status", "transcribing...");
  const resp = await fetch("/v1/music/transcriptions", { method: "POST", body: pianoForm("json"), headers: headers() });
  if (!resp.ok) { say("piano-status", await failure(resp), true); return; }
  const result = await resp.json();
  drawRoll(result.notes, result.duration);
  $("piano-midi").disabled = false;
  say("piano-status", `${result.notes.length} note(s) in ${result.duration.toFixed(2)} s`);
});

$("piano-midi").addEventListener("click", async () => {
  const resp = await fetch("/v1/music/transcriptions", { method: "POST", body: pianoForm("midi"), headers: headers() });
  if (!resp.ok) { say("piano-status", await failure(resp), true); return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await resp.blob());
  link.download = "transcription.mid";
  document.body.append(link);
  link.click();
  link.remove();
});

loadModels().catch((e) => say("server-status", String(e), true));
