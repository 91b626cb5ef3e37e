// The page of `agecurriculum serve`. Each photo goes to POST /predict in a request of its own (two at a time, so
// that a drop of many photos stays within the server's queue); its result is drawn here from the JSON: boxes and
// labels on a canvas over the photo, and each face's age-group probabilities as a small bar chart.
"use strict";

(() => {
  const COLOURS = { female: "rgb(230, 60, 140)", male: "rgb(40, 120, 230)" };  // as `predict --draw`
  const IN_FLIGHT = 2;
  const RETRIES = 5;  // on 503 (queue full): wait and try again
  const MAX_CANVAS_SIDE = 1600;  // a 48-Mpx photo drawn at full size would hold ~200 MB of canvas memory

  // What the page has shown, for whoever wants to read it (the browser test does): one entry per photo.
  const state = { model: null, drawn: [], waiting: 0, done: 0 };
  window.agecurriculum = state;

  const $ = (id) => document.getElementById(id);
  const queue = [];
  let running = 0;

  const modelReady = fetch("/model")
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((model) => {
      state.model = model;
      $("model").textContent = `Model: ${model.architecture}, age groups ${model.age_labels.join(", ")} ` +
        `(agecurriculum ${model.library_version})`;
      if (model.model_card) $("model").title = model.model_card.summary;
    })
    .catch((err) => { $("model").textContent = `The model description could not be read (${err.message}).`; });

  // "female 0.97, 24-34 (29 y)": the label `predict` prints (agecurriculum.inference.face_label).
  function faceLabel(face) {
    const [lo, hi] = face.age_range;
    return `${face.gender} ${face.gender_prob.toFixed(2)}, ${lo}-${hi} (${face.age.toFixed(0)} y)`;
  }

  function addFiles(files) {
    for (const file of files) {
      const card = $("card").content.firstElementChild.cloneNode(true);
      card.querySelector(".name").textContent = file.name;
      card.querySelector(".message").textContent = "Waiting…";
      card.dataset.state = "waiting";
      $("results").prepend(card);
      queue.push({ file, card });
    }
    pump();
  }

  function pump() {
    while (running < IN_FLIGHT && queue.length > 0) {
      const job = queue.shift();
      running += 1;
      send(job).finally(() => { running -= 1; state.done += 1; pump(); });
    }
    state.waiting = queue.length + running;
    $("status").textContent = state.waiting ? `${state.waiting} photo(s) to go…` : "";
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function send(job) {
    job.card.querySelector(".message").textContent = "Finding faces…";
    for (let attempt = 0; ; attempt += 1) {
      const form = new FormData();
      form.append("file", job.file, job.file.name);
      let response, body;
      try {
        response = await fetch("/predict", { method: "POST", body: form });
        body = await response.json();
      } catch (err) {
        return fail(job, `no answer from the server (${err.message})`);
      }
      if (response.status === 503 && attempt < RETRIES) {
        job.card.querySelector(".message").textContent = "The server is busy; trying again…";
        await sleep(1000 * (attempt + 1));
        continue;
      }
      // 200: a list with this photo's result; 422 (the photo cannot be used): {error, results}; else {error}.
      const result = Array.isArray(body) ? body[0] : body.results ? body.results[0] : null;
      if (!result) return fail(job, body.error || `HTTP ${response.status}`);
      await modelReady;
      return show(job, result);
    }
  }

  function fail(job, message) {
    job.card.classList.add("error");
    job.card.querySelector(".message").textContent = message;
    job.card.querySelector(".picture").hidden = true;
    job.card.dataset.state = "error";
    state.drawn.push({ name: job.file.name, error: message, boxes: 0, labels: [] });
  }

  async function show(job, result) {
    const card = job.card;
    card.querySelector(".json").textContent = JSON.stringify(result, null, 2);
    if (result.error) return fail(job, result.error);
    let boxes = 0;
    try {
      boxes = draw(card.querySelector("canvas"), await loadImage(job.file), result.faces);
    } catch (err) {  // a format the server reads but this browser cannot show (e.g. TIFF)
      card.querySelector(".picture").hidden = true;
    }
    const n = result.faces.length;
    card.querySelector(".message").textContent = n ? `${n} face(s)` : "No face found.";
    const list = card.querySelector(".faces");
    for (const face of result.faces) list.append(faceItem(face));
    const labels = result.faces.map(faceLabel);
    card.dataset.state = "done";
    card.dataset.boxes = String(boxes);
    state.drawn.push({ name: job.file.name, error: null, boxes, labels, result });
  }

  function loadImage(file) {
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(file);
      const img = new Image();
      // The canvas keeps the pixels; the photo's blob URL is let go at once.
      img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
      img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("cannot show this image")); };
      img.src = url;  // the browser applies the EXIF orientation, as the server does: the boxes fit
    });
  }

  // The photo with every face's box and label; returns how many boxes were drawn.
  function draw(canvas, img, faces) {
    const scale = Math.min(1, MAX_CANVAS_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
    canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
    canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const side = Math.min(canvas.width, canvas.height);
    const width = Math.max(2, Math.round(side / 200));  // lines and text stay readable on large photos
    const size = Math.max(12, Math.round(side / 28));
    const pad = Math.round(size / 4);
    ctx.font = `600 ${size}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    for (const face of faces) {
      const [x0, y0, x1, y1] = face.box.map((v) => v * scale);
      const colour = COLOURS[face.gender] || "rgb(255, 200, 0)";
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.strokeRect(x0 + width / 2, y0 + width / 2, x1 - x0 - width, y1 - y0 - width);
      const text = faceLabel(face);
      const tw = ctx.measureText(text).width + 2 * pad;
      const th = size + 2 * pad;
      const ty = y0 - th >= 0 ? y0 - th : y0;  // above the box when there is room, else inside its top edge
      const tx = Math.min(Math.max(x0, 0), Math.max(canvas.width - tw, 0));
      ctx.fillStyle = colour;
      ctx.fillRect(tx, ty, tw, th);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, tx + pad, ty + pad);
    }
    return faces.length;
  }

  // One face: its label, any warning, and the probability of every age group as a bar.
  function faceItem(face) {
    const item = $("face").content.firstElementChild.cloneNode(true);
    item.classList.add(face.gender);
    item.querySelector(".label").textContent = faceLabel(face);
    item.querySelector(".warning").textContent = face.warning || "";
    const bars = item.querySelector(".bars");
    const names = state.model ? state.model.age_labels : face.age_probs.map((_, k) => `bin ${k}`);
    bars.setAttribute("aria-label", "age-group probabilities: " +
      face.age_probs.map((p, k) => `${names[k]} ${(100 * p).toFixed(0)}%`).join(", "));
    face.age_probs.forEach((p, k) => {
      const top = k === face.age_bin;
      const bin = document.createElement("span");
      bin.className = top ? "bin top" : "bin";
      bin.textContent = names[k];
      const track = document.createElement("span");
      track.className = "track";
      const bar = document.createElement("span");
      bar.className = top ? "bar top" : "bar";
      bar.style.display = "block";
      bar.style.width = `${(100 * p).toFixed(1)}%`;
      track.append(bar);
      const value = document.createElement("span");
      value.className = top ? "value top" : "value";
      value.textContent = `${(100 * p).toFixed(0)}%`;
      bars.append(bin, track, value);
    });
    return item;
  }

  const input = $("files");
  input.addEventListener("change", () => { addFiles([...input.files]); input.value = ""; });
  const drop = $("drop");
  // A photo dropped anywhere on the page is taken, rather than opened by the browser in place of the page.
  document.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles([...e.dataTransfer.files]);
  });
})();
