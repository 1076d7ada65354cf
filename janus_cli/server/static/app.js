// The page's behaviour. It is also a worked example of the server's API: everything it does goes
// through the OpenAI-style endpoints below, with the same JSON any other client would send.
//   GET  /v1/models                              the model picker
//   POST /v1/images/generations  {stream: true}  progress bars, then one PNG per image
//   POST /v1/chat/completions    {stream: true}  answers as they are decoded
// The paths are written relative ("v1/models") so that the page also works behind a proxy that
// serves it under a sub-path.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "janus.apiKey";
let models = []; // the objects /v1/models returned

// ---------------------------------------------------------------------------------------------
// Talking to the server

/** An error object from the server ({"error": {"message", "type", "param", "code"}}) or the network. */
class ApiError extends Error {
  constructor(message, status = 0, param = null) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch() that turns a 4xx/5xx or a network failure into an ApiError with a readable message. */
async function api(path, body, signal) {
  let res;
  try {
    res = await fetch(path, {
      method: body ? "POST" : "GET",
      headers: body ? { "Content-Type": "application/json", ...authHeaders() } : authHeaders(),
      body: body ? JSON.stringify(body) : undefined,
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`Cannot reach the server (${err.message}).`);
  }
  if (res.ok) return res;
  let message = `${res.status} ${res.statusText}`;
  let param = null;
  try {
    const { error } = await res.json();
    if (error?.message) message = error.message;
    param = error?.param ?? null;
  } catch {
    // not JSON: keep the status line
  }
  if (res.status === 401) {
    message = $("api-key").value.trim()
      ? "The server did not accept this API key."
      : "This server needs an API key: enter it in the API key field at the top.";
  } else if (res.status === 429) {
    const wait = res.headers.get("Retry-After");
    message = `The server is busy${wait ? `; try again in ${wait} s` : ""}. (${message})`;
  }
  throw new ApiError(message, res.status, param);
}

/**
 * The `data:` payloads of a Server-Sent Events response, one per event. EventSource cannot POST or
 * send headers, so the stream is read with fetch's ReadableStream and split here: lines end at
 * \n, \r\n or \r; an empty line ends an event; only data fields matter to these endpoints.
 */
async function* sseData(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    let m;
    // A \r at the very end of the buffer may be the first half of a \r\n still in flight.
    while ((m = /\r\n|\n|\r(?!$)/.exec(buffer)) || (done && (m = /\r/.exec(buffer)))) {
      const line = buffer.slice(0, m.index);
      buffer = buffer.slice(m.index + m[0].length);
      if (line === "") {
        if (data.length) yield data.join("\n");
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    }
    if (done) {
      if (data.length) yield data.join("\n");
      return;
    }
  }
}

/** The JSON events of a stream up to `data: [DONE]`; an {"error": ...} event mid-stream throws. */
async function* sseJson(res) {
  for await (const data of sseData(res)) {
    if (data === "[DONE]") return;
    const event = JSON.parse(data);
    const { error } = event;
    if (error) throw new ApiError(error.message || "The server stopped with an error.", 0, error.param);
    yield event;
  }
}

// ---------------------------------------------------------------------------------------------
// Errors beside the control that caused them

function clearErrors(scope) {
  for (const out of scope.querySelectorAll("output.error")) out.textContent = "";
  for (const el of scope.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

function fieldError(control, message) {
  control.setAttribute("aria-invalid", "true");
  const out = control.parentElement.querySelector("output.error");
  out.textContent = message;
}

/** Puts ERR beside the field named by its `param` (in FORM or the header), else in FALLBACK. */
function showError(err, form, fallback) {
  if (err.status === 401) {
    fieldError($("api-key"), err.message);
    $("api-key").focus();
  }
  const named = `[data-param="${err.param}"]`;
  const control = err.param && (form.querySelector(named) || document.querySelector(`.bar ${named}`));
  if (control) fieldError(control, err.message);
  else fallback.textContent = err.message;
}

// ---------------------------------------------------------------------------------------------
// Header: API key and models

const isFlow = (id) => {
  const m = models.find((x) => x.id === id);
  return /flow/i.test(m?.family || m?.id || "");
};

let shownFlow = false;

/** JanusFlow has steps and noise instead of temperature, and its own default cfg (2, Janus 5). */
function showModelFields() {
  const flow = isFlow($("model").value);
  if (flow !== shownFlow) $("cfg").value = flow ? 2 : 5;
  shownFlow = flow;
  for (const el of document.querySelectorAll(".flow-only")) el.hidden = !flow;
  for (const el of document.querySelectorAll(".janus-only")) el.hidden = flow;
}

async function loadModels() {
  const select = $("model");
  clearErrors(select.parentElement);
  try {
    const res = await api("v1/models");
    models = (await res.json()).data;
    const keep = select.value;
    select.replaceChildren(...models.map((m) => new Option(m.id, m.id)));
    if (models.some((m) => m.id === keep)) select.value = keep;
    clearErrors($("api-key").parentElement);
  } catch (err) {
    if (err.status === 401) fieldError($("api-key"), err.message);
    else fieldError(select, `Could not list the models: ${err.message}`);
  }
  showModelFields();
}

// ---------------------------------------------------------------------------------------------
// Generate tab

let generating = null; // the AbortController of the running request

const number = (id) => ($(id).value.trim() === "" ? undefined : Number($(id).value));

/** The body the form describes; our fields (cfg, temperature, steps, noise) ride along, as in extra_body. */
function imageRequest(prompt, n) {
  const flow = isFlow($("model").value);
  return {
    model: $("model").value || undefined, // may be left out when the server serves one model
    prompt,
    n,
    seed: number("seed"),
    cfg: number("cfg"),
    ...(flow ? { steps: number("steps"), noise: $("noise").value } : { temperature: number("temperature") }),
    response_format: "b64_json",
    stream: true,
  };
}

/**
 * Streams one image request. ON_PROGRESS(index, step, steps) for progress events and
 * ON_IMAGE(index, dataUrl, seed) for each image as it completes, in any order.
 */
async function streamImages(body, signal, onProgress, onImage) {
  const res = await api("v1/images/generations", body, signal);
  for await (const ev of sseJson(res)) {
    if (ev.type === "image_generation.progress") onProgress(ev.index ?? 0, ev.step, ev.steps);
    else if (ev.type === "image_generation.completed")
      onImage(ev.index ?? 0, `data:image/png;base64,${ev.b64_json}`, ev.seed);
  }
}

function progressBar(label) {
  const wrap = document.createElement("label");
  const bar = document.createElement("progress");
  bar.max = 576;
  bar.value = 0;
  wrap.append(label, bar);
  return [wrap, bar];
}

async function generate(event) {
  event.preventDefault();
  const form = $("generate-form");
  clearErrors(form);
  $("generate-status").textContent = "";
  const prompt = $("prompt").value.trim();
  if (!prompt) return fieldError($("prompt"), "Write a prompt first.");
  const n = number("n") ?? 1;
  const body = imageRequest(prompt, n);
  const { model, cfg, temperature, steps, noise } = body;
  const recipe = { model, prompt, cfg, temperature, steps, noise };

  const bars = [];
  const list = $("progress");
  list.replaceChildren();
  for (let k = 0; k < n; k++) {
    const [wrap, bar] = progressBar(`Image ${k + 1} of ${n}`);
    list.append(wrap);
    bars.push(bar);
  }
  generating = new AbortController();
  $("generate").disabled = true;
  $("cancel").disabled = false;
  const seeds = [];
  try {
    await streamImages(
      body,
      generating.signal,
      (k, step, steps) => {
        if (!bars[k]) return;
        bars[k].max = steps;
        bars[k].value = step;
      },
      (k, url, seed) => {
        if (bars[k]) bars[k].value = bars[k].max;
        seeds.push(seed);
        addToGallery(url, { ...recipe, seed });
      },
    );
    seeds.sort((a, b) => a - b);
    const range = seeds.length > 1 ? `${seeds[0]}–${seeds.at(-1)}` : `${seeds[0] ?? ""}`;
    $("seed-used").textContent = range && `used ${range}`; // the seed shown after, also when left random
    $("generate-status").textContent = `${seeds.length} image${seeds.length === 1 ? "" : "s"} made.`;
    list.replaceChildren();
  } catch (err) {
    if (err.name === "AbortError") {
      for (const bar of bars) bar.classList.add("stopped"); // where each image was when cancelled
      $("generate-status").textContent = "Cancelled.";
    } else {
      list.replaceChildren();
      showError(err, form, $("generate-error"));
    }
  } finally {
    generating = null;
    $("generate").disabled = false;
    $("cancel").disabled = true;
  }
}

/** The recipe as lines "key: value", for the hover title and the download name. */
const recipeEntries = (r) =>
  Object.entries(r).filter(([, v]) => v !== undefined && v !== null && v !== "");

const slug = (text) =>
  text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "image";

/** One gallery item, newest first: the image, its recipe, a download link and two re-make buttons. */
function addToGallery(url, recipe) {
  const li = document.createElement("li");
  const img = new Image();
  img.src = url;
  img.alt = recipe.prompt;
  img.title = recipeEntries(recipe).map(([k, v]) => `${k}: ${v}`).join("\n");
  // The thumbnail is a button (focusable, Enter or Space) that shows the image full size.
  const thumb = button("", () => showFullSize(img));
  thumb.className = "thumb";
  thumb.setAttribute("aria-label", `View full size: ${recipe.prompt}`);
  thumb.append(img);

  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = `Recipe (seed ${recipe.seed})`;
  const dl = document.createElement("dl");
  for (const [k, v] of recipeEntries(recipe)) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    dl.append(dt, dd);
  }
  details.append(summary, dl);

  // The server's PNG already carries its recipe in its text chunks; downloading keeps it.
  const download = document.createElement("a");
  download.href = url;
  download.download = `${slug(recipe.prompt)}-${recipe.seed}.png`;
  download.textContent = "Download";
  download.className = "button";
  const again = button("Again with this seed", () => remake(recipe, recipe.seed));
  const vary = button("Vary seed", () => remake(recipe, ""));
  const tools = document.createElement("div");
  tools.className = "tools";
  tools.append(download, again, vary);

  li.append(thumb, details, tools);
  $("gallery").prepend(li);
}

/** IMG at its natural size in a modal dialog: the browser keeps focus inside it, Escape closes
 * it and gives focus back to the thumbnail; a click anywhere on it closes it too. */
function showFullSize(img) {
  const full = $("viewer-image");
  full.src = img.src;
  full.alt = img.alt;
  $("viewer").showModal();
}

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

/** Fills the form with RECIPE and SEED ("" = random) for one image, and runs it. */
function remake(recipe, seed) {
  if (generating) return;
  if (recipe.model && models.some((m) => m.id === recipe.model)) $("model").value = recipe.model;
  showModelFields();
  $("prompt").value = recipe.prompt;
  $("n").value = 1;
  $("seed").value = seed;
  for (const key of ["cfg", "temperature", "steps", "noise"]) {
    if (recipe[key] !== undefined) $(key).value = recipe[key];
  }
  selectTab($("tab-generate"));
  $("generate-form").requestSubmit();
}

// ---------------------------------------------------------------------------------------------
// Chat tab

let turns = []; // the conversation in OpenAI's message format, resent whole on every turn
let attachments = []; // data: URLs waiting to go with the next message
let chatting = null; // the AbortController of the running answer or imagine

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** Adds image FILES (from the picker, a drop or a paste) to the next message. */
async function attach(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/"));
  if (files.length && !images.length) $("chat-error").textContent = "Only images can be attached.";
  for (const file of images) attachments.push(await readAsDataUrl(file));
  renderAttachments();
}

function renderAttachments() {
  $("attachments").replaceChildren(
    ...attachments.map((url, k) => {
      const li = document.createElement("li");
      const img = new Image();
      img.src = url;
      img.alt = `Attached image ${k + 1}`;
      const remove = button("×", () => {
        attachments.splice(k, 1);
        renderAttachments();
      });
      remove.setAttribute("aria-label", `Remove image ${k + 1}`);
      li.append(img, remove);
      return li;
    }),
  );
}

/** Appends a bubble for ROLE ("user" or "assistant") with IMAGES (data: URLs) and TEXT. */
function bubble(role, images = [], text = "") {
  const li = document.createElement("li");
  li.className = role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role === "user" ? "You" : "Janus";
  li.append(who);
  for (const url of images) {
    const img = new Image();
    img.src = url;
    img.alt = role === "user" ? "Your image" : "Made image";
    li.append(img);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(body);
  $("conversation").append(li);
  followConversation(true);
  return li;
}

/** Keeps the newest message in view above the composer, unless the reader has scrolled up. */
function followConversation(always = false) {
  const atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 120;
  if (always || atEnd) window.scrollTo(0, document.body.scrollHeight);
}

function setChatBusy(busy) {
  for (const id of ["send", "imagine"]) $(id).disabled = busy;
  $("stop").disabled = !busy;
}

async function send(event) {
  event?.preventDefault();
  if (chatting) return;
  const form = $("chat-form");
  clearErrors(form);
  const text = $("message").value.trim();
  if (!text && !attachments.length) return fieldError($("message"), "Write a message or attach an image.");

  // Image parts first, then the question: the prompt `janus describe` builds for an image and a question.
  const content = [
    ...attachments.map((url) => ({ type: "image_url", image_url: { url } })),
    ...(text ? [{ type: "text", text }] : []),
  ];
  const sent = { text, images: attachments };
  turns.push({ role: "user", content });
  const userBubble = bubble("user", attachments, text);
  const answerBubble = bubble("assistant");
  const answerText = answerBubble.querySelector(".text");
  $("message").value = "";
  attachments = [];
  renderAttachments();

  chatting = new AbortController();
  setChatBusy(true);
  let answer = "";
  try {
    const res = await api(
      "v1/chat/completions",
      {
        model: $("model").value || undefined,
        messages: turns,
        temperature: number("chat-temperature"),
        max_tokens: number("max-tokens"),
        stream: true,
      },
      chatting.signal,
    );
    for await (const chunk of sseJson(res)) {
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) {
        answer += choice.delta.content;
        answerText.textContent = answer;
        followConversation();
      }
      if (choice?.finish_reason === "length") answerBubble.dataset.finish = "length";
    }
    turns.push({ role: "assistant", content: answer });
    answerBubble.dataset.done = "true";
  } catch (err) {
    if (err.name === "AbortError") {
      // Stopped: keep what was said so far, as chat apps do.
      turns.push({ role: "assistant", content: answer });
      answerBubble.dataset.done = "stopped";
    } else {
      // Failed: take the turn back so it can be sent again once the cause is fixed.
      turns.pop();
      userBubble.remove();
      answerBubble.remove();
      $("message").value = sent.text;
      attachments = sent.images;
      renderAttachments();
      showError(err, form, $("chat-error"));
    }
  } finally {
    chatting = null;
    setChatBusy(false);
  }
}

/**
 * Sends the message text to image generation (with the Generate tab's settings, one image, a
 * random seed) and shows the image in the conversation. The image is not part of the model's
 * conversation until "Ask about this image" attaches it to the next message.
 */
async function imagine() {
  if (chatting) return;
  const form = $("chat-form");
  clearErrors(form);
  const text = $("message").value.trim();
  if (!text) return fieldError($("message"), "Write what to imagine first.");
  const userBubble = bubble("user", [], `Imagine: ${text}`);
  const answerBubble = bubble("assistant");
  const [wrap, bar] = progressBar("Imagining");
  answerBubble.append(wrap);
  $("message").value = "";
  chatting = new AbortController();
  setChatBusy(true);
  const body = { ...imageRequest(text, 1), seed: undefined };
  try {
    await streamImages(
      body,
      chatting.signal,
      (_, step, steps) => {
        bar.max = steps;
        bar.value = step;
      },
      (_, url, seed) => {
        wrap.remove();
        const img = new Image();
        img.src = url;
        img.alt = text;
        const note = document.createElement("span");
        note.className = "text";
        note.textContent = `seed ${seed}`;
        const ask = button("Ask about this image", () => {
          attachments.push(url);
          renderAttachments();
          $("message").focus();
        });
        answerBubble.append(img, note, ask);
        img.addEventListener("load", () => followConversation(true), { once: true });
        answerBubble.dataset.done = "true";
        const { model, cfg, temperature, steps, noise } = body;
        addToGallery(url, { model, prompt: text, cfg, temperature, steps, noise, seed });
      },
    );
  } catch (err) {
    if (err.name === "AbortError") {
      bar.classList.add("stopped");
      answerBubble.dataset.done = "stopped";
    } else {
      userBubble.remove();
      answerBubble.remove();
      $("message").value = text;
      showError(err, form, $("chat-error"));
    }
  } finally {
    chatting = null;
    setChatBusy(false);
  }
}

function newChat() {
  chatting?.abort();
  turns = [];
  attachments = [];
  renderAttachments();
  $("conversation").replaceChildren();
  clearErrors($("chat-form"));
  $("message").value = "";
  $("message").focus();
}

// ---------------------------------------------------------------------------------------------
// Tabs (the ARIA tabs pattern: click, or arrow keys between tabs)

function selectTab(tab) {
  for (const t of document.querySelectorAll('[role="tab"]')) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
}

function wire() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      selectTab(next);
      next.focus();
    });
  }

  const key = $("api-key");
  key.value = localStorage.getItem(KEY_STORE) || "";
  key.addEventListener("input", () => {
    localStorage.setItem(KEY_STORE, key.value.trim());
    clearErrors(key.parentElement);
  });
  key.addEventListener("change", loadModels);
  $("server-form").addEventListener("submit", (e) => {
    e.preventDefault(); // Enter in the key field: list the models with the new key
    loadModels();
  });
  $("model").addEventListener("change", showModelFields);

  $("generate-form").addEventListener("submit", generate);
  $("viewer").addEventListener("click", () => $("viewer").close()); // the image, backdrop or ✕
  $("cancel").addEventListener("click", () => generating?.abort());

  $("chat-form").addEventListener("submit", send);
  $("message").addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter is a new line; never while an input method is composing.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("imagine").addEventListener("click", imagine);
  $("stop").addEventListener("click", () => chatting?.abort());
  $("new-chat").addEventListener("click", newChat);
  $("attach").addEventListener("change", async (e) => {
    await attach(e.target.files);
    e.target.value = ""; // so the same file can be picked again
  });

  const composer = $("panel-chat");
  composer.addEventListener("dragover", (e) => {
    e.preventDefault();
    $("chat-form").classList.add("dragging");
  });
  composer.addEventListener("dragleave", () => $("chat-form").classList.remove("dragging"));
  composer.addEventListener("drop", (e) => {
    e.preventDefault();
    $("chat-form").classList.remove("dragging");
    attach(e.dataTransfer.files);
  });
  document.addEventListener("paste", (e) => {
    if ($("panel-chat").hidden) return;
    const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (!files.length) return; // plain text pastes as usual
    e.preventDefault();
    attach(files);
  });

  loadModels();
  $("prompt").focus();
}

wire();
