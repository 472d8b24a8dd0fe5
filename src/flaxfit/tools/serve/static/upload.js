// The upload page: send a picture to /api/predict, show what the model makes of it.
// Plain DOM and canvas, no libraries: the page has to work offline.
"use strict";

const SHOWN = 10; // the most probable classes get a bar each
const SEEN_SIDE = 112; // CSS pixels for the longer side of "what the model sees", at least

const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
const original = document.getElementById("original");
const seenCanvas = document.getElementById("input");
const seen = seenCanvas.getContext("2d");
const predictionText = document.getElementById("prediction");
const confidenceText = document.getElementById("confidence");
const statusText = document.getElementById("status");
let info = null; // from /api/model: the class names, the input shape, the body limit
let sent = 0; // requests are numbered so that a late answer never replaces a newer one

function megabytes(size) {
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

// Pixels of the answer's "input": a number (H, W runs) or [v] / [r, g, b] (H, W, C runs).
function rgb(value) {
  if (!Array.isArray(value)) return [value, value, value];
  return value.length === 3 ? value : [value[0], value[0], value[0]];
}

function showPreview(file) {
  const reader = new FileReader(); // a data: URL, as the page's content policy allows
  reader.onload = () => {
    original.src = reader.result;
    original.hidden = false;
    document.getElementById("drop-hint").hidden = true;
  };
  reader.readAsDataURL(file);
}

// The server decodes and resizes the picture (as `flaxfit predict` does); the page
// sends the file as it is, so the answer is the same as for the file on disk.
async function predict(file) {
  await ready;
  if (!info) return; // the status line already says the model could not be read
  const number = ++sent;
  showPreview(file);
  showAnswer(null);
  if (file.size > info.max_body_bytes) { // refused here: the server would refuse it unread
    statusText.textContent = `${file.name} is ${megabytes(file.size)}; the server takes pictures up to ${megabytes(info.max_body_bytes)}: save it smaller.`;
    return;
  }
  statusText.textContent = "";
  const form = new FormData();
  form.append("file", file);
  try {
    const response = await fetch("api/predict", { method: "POST", body: form });
    const answer = await response.json();
    if (number !== sent) return;
    if (!response.ok) {
      showAnswer(null);
      statusText.textContent = `The server refused ${file.name}: ${answer.error}`;
      return;
    }
    showAnswer(answer);
  } catch (error) {
    statusText.textContent = `No answer from the server (${error.message}); is flaxfit serve still running?`;
  }
}

function showAnswer(answer) {
  const ranks = document.getElementById("ranks");
  ranks.replaceChildren();
  if (!answer) {
    predictionText.textContent = "–";
    confidenceText.textContent = "";
    seen.clearRect(0, 0, seenCanvas.width, seenCanvas.height);
    return;
  }
  predictionText.textContent = answer.class;
  confidenceText.textContent = `${(100 * answer.probabilities[answer.index]).toFixed(1)}% sure`;
  paint(seen, answer.input, rgb);
  const order = answer.probabilities.map((p, i) => i).sort((a, b) => answer.probabilities[b] - answer.probabilities[a]);
  for (const i of order.slice(0, SHOWN)) {
    const p = answer.probabilities[i];
    const row = document.createElement("div");
    row.className = i === answer.index ? "rank top" : "rank";
    row.innerHTML = '<span class="name"></span><div class="track"><div class="bar"></div></div><span class="percent"></span>';
    row.querySelector(".name").textContent = info.classes[i];
    row.querySelector(".bar").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".percent").textContent = `${(100 * p).toFixed(1)}%`;
    row.title = `${info.classes[i]}: ${(100 * p).toFixed(2)}%`;
    ranks.appendChild(row);
  }
}

fileInput.addEventListener("change", () => {
  if (fileInput.files.length) predict(fileInput.files[0]);
});
drop.addEventListener("dragover", (event) => {
  event.preventDefault(); // without it the browser would open the dropped file itself
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) predict(event.dataTransfer.files[0]);
});

async function loadModel() {
  try {
    info = await (await fetch("api/model")).json();
    document.getElementById("model").textContent = describeModel(info);
    document.getElementById("limit").textContent = megabytes(info.max_body_bytes);
    const [height, width] = info.input_shape;
    seenCanvas.width = width;
    seenCanvas.height = height;
    const scale = Math.max(1, Math.floor(SEEN_SIDE / Math.max(height, width)));
    seenCanvas.style.width = `${width * scale}px`;
    seenCanvas.style.height = `${height * scale}px`;
    const channels = info.input_shape.length === 3 && info.input_shape[2] === 3 ? "colour" : "grayscale";
    document.getElementById("seen-caption").textContent = `what the model sees (${width}×${height}, ${channels})`;
  } catch (error) {
    statusText.textContent = `Could not read the model (${error.message}).`;
  }
}

const ready = loadModel();
