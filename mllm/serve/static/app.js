// The demo page: upload or drop an image -> POST /api/caption; a prompt -> POST /api/generate, read as a stream.
"use strict";

const $ = (id) => document.getElementById(id);

function showError(which, message) {
  const box = $(which + "-error");
  box.textContent = message;
  box.hidden = !message;
}

async function errorMessage(response) {
  // The API answers a refused input with {"detail": "what is wrong; the fix"}.
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (e) {
    return `the server answered ${response.status} ${response.statusText}`;
  }
}

async function loadInfo() {
  try {
    const info = await (await fetch("/api/info")).json();
    $("max-upload").textContent = (info.limits.max_upload_bytes / 1e6).toFixed(0);
    $("length").max = info.limits.max_length;
    $("image-size").textContent = info.image_size;
    $("same-vit").hidden = !info.same_vit;
    document.querySelectorAll(".image-size").forEach((el) => { el.textContent = info.image_size; });
  } catch (e) { /* the page still works with its defaults */ }
}

// ---- captions -------------------------------------------------------------------------------------------

async function caption(file) {
  const results = $("caption-results");
  showError("caption", "");
  results.dataset.state = "busy";
  $("caption-status").textContent = `captioning ${file.name} ...`;
  const form = new FormData();
  form.append("file", file, file.name);
  let response;
  try {
    response = await fetch("/api/caption", { method: "POST", body: form });
  } catch (e) {
    results.dataset.state = "error";
    $("caption-status").textContent = "";
    showError("caption", `could not reach the server (${e.message}); is python main.py serve still running?`);
    return;
  }
  if (!response.ok) {
    results.dataset.state = "error";
    $("caption-status").textContent = "";
    showError("caption", await errorMessage(response));
    return;
  }
  const data = await response.json();
  const preview = $("upload-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  $("model-input").src = data.model_input_png;
  for (const model of ["supervised", "scst"]) {
    $(`attn-base-${model}`).src = data.model_input_png;
    $(`attn-${model}`).src = data.attention_png[model];
    for (const strategy of ["greedy", "beam"]) {
      showWords($(`cap-${model}-${strategy}`), data.captions[model][strategy],
                (data.word_attention[model] || {})[strategy] || [], `${model}, ${strategy}`);
    }
  }
  $("word-base").src = data.model_input_png;
  $("word-map").removeAttribute("src");
  $("word-label").textContent = "hover or click a word of a caption";
  results.hidden = false;
  results.dataset.state = "done";
  $("caption-status").textContent = `${file.name}: captioned in ${data.seconds.toFixed(2)} s on the server`;
}

// A caption as one span per word; hovering, focusing or clicking a word shows where it looked in the image.
function showWords(cell, caption, words, label) {
  cell.replaceChildren();
  if (!caption) { cell.textContent = "(empty caption)"; return; }
  caption.split(" ").forEach((text, i) => {
    const span = document.createElement("span");
    span.textContent = text;
    if (words[i]) {
      span.className = "word";
      span.tabIndex = 0;
      const show = () => {
        document.querySelectorAll(".word.active").forEach((w) => w.classList.remove("active"));
        span.classList.add("active");
        $("word-map").src = words[i].png;
        $("word-label").textContent = `"${text}" (${label})`;
      };
      span.addEventListener("mouseenter", show);
      span.addEventListener("focus", show);
      span.addEventListener("click", show);
    }
    cell.append(span, " ");
  });
}

function setUpUpload() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => { if (e.target.files.length) caption(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) caption(e.dataTransfer.files[0]);
  });
}

// ---- text -----------------------------------------------------------------------------------------------

let controller = null;

async function generate(event) {
  event.preventDefault();
  const status = $("gen-status");
  const prompt = $("prompt").value;
  const body = { prompt, length: Number($("length").value), temperature: Number($("temperature").value),
                 seed: Math.floor(Math.random() * 1e9) };
  showError("gen", "");
  controller = new AbortController();
  $("generate").disabled = true;
  $("stop").disabled = false;
  status.dataset.state = "busy";
  status.textContent = "generating ...";
  const started = performance.now();
  let count = 0;
  try {
    const response = await fetch("/api/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: controller.signal });
    if (!response.ok) {
      status.dataset.state = "error";
      status.textContent = "";
      showError("gen", await errorMessage(response));
      return;
    }
    $("gen-prompt").textContent = prompt;
    const out = $("gen-text");
    out.textContent = "";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      out.textContent += text;
      count += text.length;
      $("gen-output").scrollTop = $("gen-output").scrollHeight;
    }
    const seconds = (performance.now() - started) / 1000;
    status.dataset.state = "done";
    status.textContent = `${count} characters in ${seconds.toFixed(1)} s (${(count / seconds).toFixed(0)}/s), ` +
                         `temperature ${body.temperature}`;
  } catch (e) {
    status.dataset.state = e.name === "AbortError" ? "stopped" : "error";
    status.textContent = e.name === "AbortError" ? `stopped after ${count} characters` : "";
    if (e.name !== "AbortError") showError("gen", `generation failed (${e.message}); is the server still running?`);
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  loadInfo();
  setUpUpload();
  $("gen-form").addEventListener("submit", generate);
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("temperature").addEventListener("input", (e) => { $("temperature-value").textContent = e.target.value; });
});
