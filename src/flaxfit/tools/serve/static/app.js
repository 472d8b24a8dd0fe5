// The digit pad: draw on the canvas, send it to /api/predict, show what comes back.
// Plain DOM and canvas, no libraries: the page has to work offline.
"use strict";

const DEBOUNCE_MS = 120; // while drawing, ask again once the pen pauses this long
const PEN_WIDTH = 18; // in canvas pixels of 280: MNIST strokes are about 1/10 of the digit
// magma, the colour map of `flaxfit plot`'s feature maps, as a few stops to interpolate
const MAGMA = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];

const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const seen = document.getElementById("input").getContext("2d");
const predictionText = document.getElementById("prediction");
const confidenceText = document.getElementById("confidence");
const statusText = document.getElementById("status");
const bars = [];
let withMaps = false; // set from /api/model: only CNNs have feature maps
let drawing = false;
let inked = false;
let last = null;
let timer = null;
let sent = 0; // requests are numbered so that a late answer never replaces a newer one
let shown = 0;

function makeBars() {
  const chart = document.getElementById("bars");
  for (let digit = 0; digit < 10; digit++) {
    const column = document.createElement("div");
    column.className = "column";
    column.innerHTML = '<span class="percent"></span><div class="bar"></div><span class="digit"></span>';
    column.querySelector(".digit").textContent = digit;
    chart.appendChild(column);
    bars.push(column);
  }
}

function clearPad() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  shown = sent; // answers still on their way belong to the old drawing
  clearTimeout(timer);
  showProbabilities(null);
  predictionText.textContent = "–";
  confidenceText.textContent = "";
  seen.clearRect(0, 0, 28, 28);
  document.querySelectorAll("#maps canvas").forEach((c) => c.getContext("2d").clearRect(0, 0, 28, 28));
  statusText.textContent = "";
}

// Pointer events cover mouse, pen and touch alike; coordinates are scaled because
// the canvas may be shown smaller than its 280x280 pixels.
function canvasPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

function strokeTo(point) {
  pen.beginPath();
  pen.moveTo(...last);
  pen.lineTo(...point);
  pen.stroke();
  last = point;
  inked = true;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = canvasPoint(event);
  strokeTo(last); // a dot for a tap
  schedulePrediction();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const move of moves.length ? moves : [event]) strokeTo(canvasPoint(move));
  schedulePrediction();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    clearTimeout(timer);
    predict();
  });
}
document.getElementById("clear").addEventListener("click", clearPad);

function schedulePrediction() {
  clearTimeout(timer);
  timer = setTimeout(predict, DEBOUNCE_MS);
}

// The server prepares the picture as MNIST was made (crop, fit in 20x20, centre
// of mass in 28x28); the page sends the whole canvas as a PNG.
async function predict() {
  if (!inked) return;
  const number = ++sent;
  const body = JSON.stringify({ png: pad.toDataURL("image/png"), feature_maps: withMaps });
  try {
    const response = await fetch("api/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body,
    });
    const answer = await response.json();
    if (number <= shown) return;
    shown = number;
    if (!response.ok) {
      statusText.textContent = `The server refused the drawing: ${answer.error}`;
      return;
    }
    statusText.textContent = "";
    showAnswer(answer);
  } catch (error) {
    statusText.textContent = `No answer from the server (${error.message}); is flaxfit serve still running?`;
  }
}

function showAnswer(answer) {
  predictionText.textContent = answer.digit;
  confidenceText.textContent = `${(100 * answer.probabilities[answer.digit]).toFixed(1)}% sure`;
  showProbabilities(answer.probabilities, answer.digit);
  paint(seen, answer.input, (v) => [v, v, v]);
  if (answer.feature_maps) showMaps(answer.feature_maps);
}

function showProbabilities(probabilities, top) {
  bars.forEach((column, digit) => {
    const p = probabilities ? probabilities[digit] : 0;
    column.querySelector(".bar").style.height = `${(100 * p).toFixed(1)}%`;
    column.querySelector(".percent").textContent = probabilities ? `${Math.round(100 * p)}%` : "";
    column.classList.toggle("top", digit === top);
    column.title = `${digit}: ${(100 * p).toFixed(2)}%`;
  });
}

function magma(value) {
  const x = (value / 255) * (MAGMA.length - 1);
  const i = Math.min(Math.floor(x), MAGMA.length - 2);
  const t = x - i;
  return MAGMA[i].map((low, k) => Math.round(low + t * (MAGMA[i + 1][k] - low)));
}

function showMaps(featureMaps) {
  const grid = document.getElementById("maps");
  if (grid.children.length !== featureMaps.maps.length) {
    grid.replaceChildren();
    featureMaps.maps.forEach((_, channel) => {
      const figure = document.createElement("figure");
      figure.innerHTML = '<canvas width="28" height="28"></canvas><figcaption></figcaption>';
      figure.querySelector("figcaption").textContent = `${featureMaps.layer}[${channel}]`;
      grid.appendChild(figure);
    });
  }
  featureMaps.maps.forEach((rows, channel) => {
    const figure = grid.children[channel];
    figure.title = `max ${featureMaps.max[channel].toFixed(3)}`;
    paint(figure.querySelector("canvas").getContext("2d"), rows, magma);
  });
}

async function loadModel() {
  try {
    const info = await (await fetch("api/model")).json();
    document.getElementById("model").textContent = describeModel(info);
    withMaps = info.feature_maps;
    document.getElementById("maps-section").hidden = !withMaps;
    document.getElementById("no-maps").hidden = withMaps;
  } catch (error) {
    statusText.textContent = `Could not read the model (${error.message}).`;
  }
}

pen.lineWidth = PEN_WIDTH;
pen.lineCap = "round";
pen.lineJoin = "round";
pen.strokeStyle = "#fff";
makeBars();
clearPad();
loadModel();
