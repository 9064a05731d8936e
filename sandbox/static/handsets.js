// Texts appear live: poll for changes and swap in the timelines the server rendered (and
// escaped). Forms are left alone, so nothing typed is lost. Without JavaScript, reload.
"use strict";
(function () {
  const POLL_MS = 1000;
  const body = document.body;
  const main = document.getElementById("phones");
  let version = body.dataset.version;

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  function apply(update) {
    version = String(update.version);
    for (const phone of update.phones) {
      const card = main.querySelector(`section.phone[data-phone="${CSS.escape(phone.phone)}"]`);
      if (card === null) {
        document.getElementById("no-phones")?.remove();
        main.append(fragment(phone.card));
        continue;
      }
      const timeline = card.querySelector(".timeline");
      if (timeline.innerHTML !== phone.timeline) {
        timeline.innerHTML = phone.timeline;
        timeline.scrollTop = timeline.scrollHeight;
      }
    }
  }

  async function poll() {
    try {
      const response = await fetch(`${body.dataset.live}?since=${encodeURIComponent(version)}`,
                                   { cache: "no-store", credentials: "same-origin" });
      if (response.status === 200) {
        apply(await response.json());
      }
    } catch (error) {
      // The sandbox stopped or restarted: keep trying, quietly.
    }
    window.setTimeout(poll, POLL_MS);
  }

  for (const timeline of document.querySelectorAll(".timeline")) {
    timeline.scrollTop = timeline.scrollHeight;
  }
  window.setTimeout(poll, POLL_MS);
})();
