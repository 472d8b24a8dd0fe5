// What the digit pad (app.js) and the upload page (upload.js) share; loaded before either.
"use strict";

// The header line: which model this is and how well it did on the test set.
function describeModel(info) {
  const accuracy = info.test_accuracy == null ? "no test accuracy recorded"
    : `test accuracy ${(100 * info.test_accuracy).toFixed(2)}% after ${info.epochs} epochs`;
  return `${info.model} on ${info.dataset} (run ${info.run}): ${info.params.toLocaleString("en")} params, ${accuracy}`;
}

// Draw rows of pixels into a canvas of their size: each pixel a 0-255 value, or an
// array of channels (1 or 3), turned into [r, g, b] by `colour`.
function paint(context, rows, colour) {
  const image = context.createImageData(rows[0].length, rows.length);
  rows.flat().forEach((value, i) => {
    image.data.set([...colour(value), 255], 4 * i);
  });
  context.putImageData(image, 0, 0);
}
