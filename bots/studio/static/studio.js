// vchar studio: streaming chat, live updates and drop zones. Plain forms work without it.
(function () {
  "use strict";
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // POST a form and read its answer as server-sent events; calls onEvent(name, data) for each.
  async function postStream(url, body, onEvent) {
    const res = await fetch(url, { method: "POST", body, credentials: "same-origin",
      headers: { "Accept": "text/event-stream", "X-CSRF-Token": csrf } });
    if (!res.ok || !res.body) { throw new Error((await res.text()).replace(/<[^>]+>/g, " ").trim() || res.statusText); }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        let name = "message", data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  function scrollDown(box) {
    if (!box) return;
    box.scrollTop = box.scrollHeight;
    // pictures and players take their height as they load: follow them down
    box.querySelectorAll("img, video").forEach(function (el) {
      if (!el.dataset.followed) {
        el.dataset.followed = "1";
        el.addEventListener("load", function () { box.scrollTop = box.scrollHeight; });
        el.addEventListener("loadedmetadata", function () { box.scrollTop = box.scrollHeight; });
      }
    });
  }

  async function refresh(thread) {
    const box = thread.querySelector("#messages");
    const conv = thread.dataset.conv ? "?conv=" + thread.dataset.conv : "";
    const res = await fetch("/chat/" + thread.dataset.persona + "/messages" + conv, { credentials: "same-origin" });
    if (res.ok) { box.innerHTML = await res.text(); if (window.htmx) htmx.process(box); scrollDown(box); }
  }

  function bubble(box, role, text) {
    const div = document.createElement("div");
    div.className = "msg " + role;
    const t = document.createElement("div");
    t.className = "text";
    t.textContent = text;
    div.appendChild(t);
    box.appendChild(div);
    scrollDown(box);
    return div;
  }

  async function streamInto(thread, url, body) {
    const box = thread.querySelector("#messages");
    const pending = bubble(box, "assistant pending", "");
    const text = pending.querySelector(".text");
    try {
      await postStream(url, body, function (name, data) {
        if (name === "token") { text.textContent += data; scrollDown(box); }
        else if (name === "done") { text.textContent = data.text; }
        else if (name === "error") { throw new Error(data); }
      });
    } catch (err) {
      pending.classList.remove("pending");
      text.textContent = "The studio could not get an answer: " + err.message;
      pending.classList.add("error");
      return;
    }
    await refresh(thread);
  }

  function setupChat(thread) {
    const box = thread.querySelector("#messages");
    scrollDown(box);
    const form = thread.querySelector("#compose");
    if (form) {
      const area = form.querySelector("textarea");
      area.addEventListener("keydown", function (e) {
        if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
      });
      form.addEventListener("submit", async function (e) {
        e.preventDefault();
        const said = area.value.trim();
        if (!said) return;
        const body = new FormData(form);
        area.value = "";
        const button = form.querySelector("button");
        button.disabled = true;
        bubble(box, "user", said);
        try { await streamInto(thread, form.action, body); } finally { button.disabled = false; area.focus(); }
      });
    }
    box.addEventListener("click", async function (e) {
      const regen = e.target.closest("button.regen");
      if (regen) {
        e.preventDefault();
        regen.closest(".msg").remove();
        await streamInto(thread, regen.dataset.url, new FormData());
        return;
      }
      const edit = e.target.closest("button.edit");
      if (edit) {
        e.preventDefault();
        const msg = edit.closest(".msg"), shown = msg.querySelector(".text");
        if (msg.querySelector("form")) return;
        const f = document.createElement("form");
        f.innerHTML = '<textarea name="text" aria-label="Edit message"></textarea><button type="submit">Save</button> <button type="button" class="quiet">Cancel</button>';
        f.querySelector("textarea").value = shown.textContent;
        shown.replaceWith(f);
        f.querySelector("button.quiet").onclick = function () { f.replaceWith(shown); };
        f.onsubmit = async function (ev) {
          ev.preventDefault();
          const res = await fetch(edit.dataset.url, { method: "POST", body: new FormData(f), credentials: "same-origin",
            headers: { "X-CSRF-Token": csrf, "HX-Request": "true" } });
          if (res.ok) { box.innerHTML = await res.text(); if (window.htmx) htmx.process(box); }
        };
      }
    });
    if (thread.dataset.live && window.EventSource) {
      const events = new EventSource("/chat/" + thread.dataset.persona + "/events");
      const activity = thread.querySelector("#activity");
      let quiet;
      events.addEventListener("changed", function () { if (!box.querySelector(".pending")) refresh(thread); });
      events.addEventListener("progress", function (e) {
        const data = JSON.parse(e.data), msg = document.getElementById("m" + data.id);
        if (msg) msg.querySelector(".text").textContent = data.text;
      });
      events.addEventListener("activity", function (e) {
        activity.textContent = "making " + (JSON.parse(e.data).kind || "something") + "…";
        clearTimeout(quiet);
        quiet = setTimeout(function () { activity.textContent = ""; }, 6000);
      });
    }
  }

  function setupDropzones() {
    document.querySelectorAll(".dropzone").forEach(function (zone) {
      const input = zone.querySelector('input[type="file"]');
      const form = zone.closest("form");
      if (!input || !form) return;
      ["dragenter", "dragover"].forEach(function (t) {
        zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (t) {
        zone.addEventListener(t, function () { zone.classList.remove("over"); });
      });
      zone.addEventListener("drop", function (e) {
        e.preventDefault();
        if (!e.dataTransfer.files.length) return;
        input.files = e.dataTransfer.files;
        form.requestSubmit();
      });
      input.addEventListener("change", function () { if (input.files.length && zone.dataset.auto !== "off") form.requestSubmit(); });
    });
  }

  // Job progress, live: the table body is replaced with each update the server sends.
  function setupJobs() {
    const body = document.getElementById("jobs-body");
    if (!body || !window.EventSource) return;
    const events = new EventSource(body.dataset.events || "/jobs/events");
    events.addEventListener("jobs", function (e) {
      body.innerHTML = JSON.parse(e.data);
      if (window.htmx) htmx.process(body);
    });
    const depth = document.getElementById("jobs-depth");
    events.addEventListener("depth", function (e) { if (depth) depth.innerHTML = JSON.parse(e.data); });
  }

  // No inline script anywhere (the studio's Content-Security-Policy allows its own files only):
  // the character picker and the confirmations are wired here.
  function setupForms() {
    document.querySelectorAll("form.persona-pick").forEach(function (form) {
      const go = function () { location.href = "/" + form.dataset.section + "/" + encodeURIComponent(form.persona.value); };
      form.persona.addEventListener("change", go);
      form.addEventListener("submit", function (e) { e.preventDefault(); go(); });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (e) { if (!confirm(form.dataset.confirm)) e.preventDefault(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupForms();
    document.querySelectorAll("section.thread").forEach(setupChat);
    setupDropzones();
    setupJobs();
  });
  window.vcharStudio = { postStream: postStream };
})();
