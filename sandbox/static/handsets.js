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

  // Tapping a received text readies a reply to the number it came from, as a phone would.
  main.addEventListener("click", (event) => {
    const item = event.target.closest(".timeline li.in");
    const to = item?.closest("section.phone")?.querySelector('input[name="to"]');
    if (item && to) {
      to.value = item.querySelector(".number").textContent.trim();
      to.closest("form").querySelector("textarea").focus();
    }
  });

  for (const timeline of document.querySelectorAll(".timeline")) {
    timeline.scrollTop = timeline.scrollHeight;
  }
  window.setTimeout(poll, POLL_MS);
})();
