// Ranking page: drag (SortableJS), rank buttons (mouse, touch) and keyboard ranking with ties, flags, "all
// bad", skip dialog, "show source", time tracking, and errors shown where the user is.
// The per-candidate <select name="rank"> and the "all_bad" checkbox are the source of truth, so the form
// also works without JS; everything else mirrors them.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var timer = { visibleMs: 0, since: null };
  var SOURCE_KEY = "rankloop.showSource";

  function task() { return document.getElementById("task"); }
  function cards(t) { return Array.prototype.slice.call(t.querySelectorAll(".cand")); }
  function select(li) { return li.querySelector('select[name="rank"]'); }
  function rankOf(li) {
    var part = select(li).value.split(":")[1];
    return part ? parseInt(part, 10) : null;
  }
  function setRank(li, r) { select(li).value = li.dataset.id + ":" + (r || ""); }

  function tiers(t) {
    var byRank = {};
    cards(t).forEach(function (li) {
      var r = rankOf(li);
      if (r) { (byRank[r] = byRank[r] || []).push(li); }
    });
    return Object.keys(byRank).map(Number).sort(function (a, b) { return a - b; })
      .map(function (r) { return byRank[r]; });
  }

  // Show ranks as badges ("1", "1=" for a tie), group tied cards, keep the list sorted best first.
  function refresh(t, reorder) {
    var list = t.querySelector("#candidates");
    var all = cards(t);
    var counts = {};
    all.forEach(function (li) { var r = rankOf(li); if (r) { counts[r] = (counts[r] || 0) + 1; } });
    if (reorder) {
      var focused = document.activeElement;
      all.slice().sort(function (a, b) {
        var ra = rankOf(a) || Infinity, rb = rankOf(b) || Infinity;
        return ra !== rb ? ra - rb : Number(a.dataset.pos) - Number(b.dataset.pos);
      }).forEach(function (li) { list.appendChild(li); });
      if (focused && list.contains(focused)) { focused.focus({ preventScroll: true }); }
      all = cards(t);
    }
    all.forEach(function (li, i) {
      var r = rankOf(li);
      var tied = !!r && counts[r] > 1;
      li.querySelectorAll("[data-set-rank]").forEach(function (b) {
        b.setAttribute("aria-pressed", String(Number(b.dataset.setRank) === r));
      });
      li.querySelector("[data-badge]").textContent = r ? (tied ? r + "=" : String(r)) : "–";
      li.classList.toggle("ranked", !!r);
      li.classList.toggle("tied", tied);
      var prev = all[i - 1], next = all[i + 1];
      li.classList.toggle("tie-start", tied && !(prev && rankOf(prev) === r));
      li.classList.toggle("tie-cont", tied && !!prev && rankOf(prev) === r);
      li.classList.toggle("tie-end", tied && !(next && rankOf(next) === r));
      li.setAttribute("aria-label", "Response " + li.dataset.label + (r ? ", rank " + r + (tied ? " (tie)" : "") : ", unranked"));
    });
    var summary = t.querySelector("#tier-summary");
    var ts = tiers(t);
    summary.textContent = ts.length
      ? ts.map(function (tier) { return tier.map(function (li) { return li.dataset.label; }).join(" = "); }).join("  ≻  ")
      : summary.dataset.empty;
  }

  // The page's errors go to a toast fixed to the window's bottom, so they are seen wherever the user has
  // scrolled to; `offerNext` adds "Load the next task" for a task that is gone (ranked in another tab,
  // expired, closed), so the user is not left on a dead one.
  function showError(t, message, inDialog, offerNext) {
    if (inDialog) {
      var inline = t.querySelector("[data-dialog-error]");
      if (inline) { inline.textContent = message; inline.hidden = !message; }
      return;
    }
    var box = t.querySelector("#task-error");
    if (!box) { return; }
    box.querySelector("[data-error-text]").textContent = message;
    var next = box.querySelector("[data-next-task]");
    next.hidden = !(message && offerNext);
    box.hidden = !message;
    if (message && offerNext) { next.focus({ preventScroll: true }); }
  }

  function allBadBox(t) { return t.querySelector('input[name="all_bad"]'); }

  // Mirror the "all bad" checkbox (far down the form) in the sticky summary row, where the eye is.
  function syncAllBad(t) {
    var box = allBadBox(t);
    var toggle = t.querySelector("[data-all-bad-toggle]");
    if (box && toggle) { toggle.setAttribute("aria-pressed", String(box.checked)); }
  }

  function toggleAllBad(t) {
    var box = allBadBox(t);
    if (!box) { return; }
    box.checked = !box.checked;
    syncAllBad(t);
  }

  function sourceWanted() {
    try { return window.localStorage.getItem(SOURCE_KEY) === "1"; } catch (err) { return false; }
  }

  // "Show source" holds for every text on the page and is remembered for the next tasks.
  function showSource(t, on) {
    t.classList.toggle("show-source", on);
    var button = t.querySelector("[data-toggle-source]");
    if (button) {
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? "Show formatted" : "Show source";
    }
  }

  function secondsSpent() {
    var ms = timer.visibleMs + (timer.since !== null ? performance.now() - timer.since : 0);
    return (ms / 1000).toFixed(1);
  }

  function focusCard(t, index, keepScroll) {
    var all = cards(t);
    if (!all.length) { return; }
    var li = all[Math.max(0, Math.min(all.length - 1, index))];
    li.focus({ preventScroll: !!keepScroll });
  }

  function currentCard(t) {
    var el = document.activeElement;
    var li = el && el.closest ? el.closest(".cand") : null;
    return li && t.contains(li) ? li : null;
  }

  // True when every response has a rank; otherwise says which ones are left and focuses the first.
  function complete(t) {
    var unranked = cards(t).filter(function (li) { return !rankOf(li); });
    if (!unranked.length) { return true; }
    showError(t, "Rank every response first (" + unranked.length + " left: " +
      unranked.map(function (li) { return li.dataset.label; }).join(", ") + ").");
    unranked[0].focus();
    return false;
  }

  function submit(t) { t.querySelector("#rank-form").requestSubmit(); }

  function openSkip(t) {
    var dialog = t.querySelector("#skip-dialog");
    if (!dialog || dialog.open) { return; }
    showError(t, "", true);
    dialog.showModal();
    dialog.querySelector("textarea").focus();
  }

  function toggleFlag(li, name) {
    var box = li.querySelector('input[name="flag"][value$=":' + name + '"]');
    if (box) { box.checked = !box.checked; }
  }

  function init(t) {
    if (!t || t.dataset.ready) { return; }
    t.dataset.ready = "1";
    timer.visibleMs = 0;
    timer.since = document.hidden ? null : performance.now();
    var list = t.querySelector("#candidates");
    if (!list) { return; }
    if (window.Sortable) {
      window.Sortable.create(list, {
        animation: 150,
        handle: ".cand-head",
        // On a touch screen a finger moving over a header scrolls the page; a short hold starts a drag.
        delay: 200,
        delayOnTouchOnly: true,
        filter: "input, select, label, button",
        preventOnFilter: false,
        onEnd: function () {
          // A drag states a full, strict order: rank everything by its new position.
          cards(t).forEach(function (li, i) { setRank(li, i + 1); });
          refresh(t, false);
        },
      });
    }
    t.querySelectorAll("time[data-local-time]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
    });
    showSource(t, sourceWanted());
    syncAllBad(t);
    refresh(t, true);
    // Open at the top (the progress counter and the prompt's start in view), also after a task swapped in
    // at the bottom of the last one; the first response gets the focus for the keys without scrolling to it.
    window.scrollTo(0, 0);
    focusCard(t, 0, true);
  }

  document.addEventListener("keydown", function (e) {
    var t = task();
    if (!t || !t.querySelector("#candidates") || e.ctrlKey || e.metaKey || e.altKey) { return; }
    var dialog = t.querySelector("#skip-dialog");
    if (dialog && dialog.open) { return; }
    var el = e.target;
    var typing = el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
      (el.tagName === "INPUT" && !/^(checkbox|radio|button|submit)$/.test(el.type)));
    if (typing) { return; }
    var li = currentCard(t);
    var all = cards(t);
    var k = all.length;
    var key = e.key;
    if (/^[0-9]$/.test(key)) {
      var n = parseInt(key, 10);
      if (n > k) { return; }
      e.preventDefault();
      li = li || all[0];
      setRank(li, n);
      showError(t, "");
      li.focus({ preventScroll: true });
      refresh(t, true);
      // Keyboard flow: after ranking one, move on to the first still-unranked response.
      var next = cards(t).filter(function (c) { return !rankOf(c); })[0];
      if (n !== 0 && next) { next.focus(); } else { li.focus(); }
    } else if (key === "Backspace" || key === "Delete") {
      if (!li) { return; }
      e.preventDefault();
      setRank(li, null);
      refresh(t, true);
      li.focus();
    } else if (key === "ArrowDown" || key === "ArrowRight" || key === "j") {
      e.preventDefault();
      focusCard(t, li ? all.indexOf(li) + 1 : 0);
    } else if (key === "ArrowUp" || key === "ArrowLeft" || key === "k") {
      e.preventDefault();
      focusCard(t, li ? all.indexOf(li) - 1 : 0);
    } else if (key === "Enter") {
      if (el && /^(BUTTON|A|SUMMARY)$/.test(el.tagName)) { return; }
      e.preventDefault();
      submit(t);
    } else if (key === "s" || key === "S") {
      e.preventDefault();
      openSkip(t);
    } else if ((key === "u" || key === "U") && li) {
      e.preventDefault();
      toggleFlag(li, "unsafe");
    } else if ((key === "i" || key === "I") && li) {
      e.preventDefault();
      toggleFlag(li, "incorrect");
    } else if (key === "b" || key === "B") {
      e.preventDefault();
      toggleAllBad(t);
    }
  });

  document.addEventListener("change", function (e) {
    var t = task();
    if (!t || !e.target.matches) { return; }
    if (e.target.matches('select[name="rank"]')) { refresh(t, true); }
    if (e.target.matches('input[name="all_bad"]')) { syncAllBad(t); }
  });

  document.addEventListener("click", function (e) {
    var t = task();
    if (!t) { return; }
    var more = e.target.closest("[data-more]");
    if (more) {
      var text = more.parentNode.querySelector(".cand-text");
      var collapsed = text.classList.toggle("collapsed");
      more.textContent = collapsed ? "Show more" : "Show less";
      more.setAttribute("aria-expanded", String(!collapsed));
      return;
    }
    var rankButton = e.target.closest("[data-set-rank]");
    if (rankButton) {
      // The keyboard's digits for mouse and touch: the same number on two responses is a tie, the pressed
      // number again clears the rank. The list is not re-sorted here, unlike with keys: a card jumping away
      // from under the pointer loses the user's place; the summary shows the order instead.
      var li = rankButton.closest(".cand");
      var r = Number(rankButton.dataset.setRank);
      setRank(li, rankOf(li) === r ? null : r);
      showError(t, "");
      refresh(t, false);
      return;
    }
    if (e.target.closest("[data-all-bad-toggle]")) { toggleAllBad(t); return; }
    var sourceButton = e.target.closest("[data-toggle-source]");
    if (sourceButton) {
      var on = !t.classList.contains("show-source");
      showSource(t, on);
      try { window.localStorage.setItem(SOURCE_KEY, on ? "1" : "0"); } catch (err) { /* not remembered */ }
      return;
    }
    if (e.target.closest("[data-dismiss-error]")) { showError(t, ""); return; }
    if (e.target.closest("[data-open-skip]")) { openSkip(t); return; }
    if (e.target.closest("[data-close-skip]")) { t.querySelector("#skip-dialog").close(); return; }
    var chip = e.target.closest("[data-reason]");
    if (chip) {
      var area = chip.closest("form").querySelector("textarea[name=reason]");
      area.value = chip.dataset.reason;
      area.focus();
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden && timer.since !== null) {
      timer.visibleMs += performance.now() - timer.since;
      timer.since = null;
    } else if (!document.hidden && timer.since === null) {
      timer.since = performance.now();
    }
  });

  // Capture phase: runs before htmx's own submit handler on the form, so an incomplete ranking is never sent.
  // Without htmx (or before it loads) the plain form post still carries the time spent.
  document.addEventListener("submit", function (e) {
    if (e.target.id !== "rank-form") { return; }
    if (!complete(task())) {
      e.preventDefault();
      e.stopPropagation();
      return;
    }
    e.target.querySelector('input[name="seconds_spent"]').value = secondsSpent();
  }, true);

  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.elt && e.detail.elt.id === "rank-form") { e.detail.parameters.seconds_spent = secondsSpent(); }
  });

  document.addEventListener("htmx:responseError", function (e) {
    var t = task();
    if (!t) { return; }
    var message = "Something went wrong (" + e.detail.xhr.status + "). Please try again.";
    try {
      var doc = new DOMParser().parseFromString(e.detail.xhr.responseText, "text/html");
      var found = doc.querySelector(".error");
      var text = found ? found.textContent.trim() : "";
      // The server's messages start in lower case (they also appear mid-sentence in the JSON API).
      if (text) { message = text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : "."); }
    } catch (err) { /* keep the generic message */ }
    var dialog = e.detail.elt && e.detail.elt.closest ? e.detail.elt.closest("dialog") : null;
    // 409: ranked or skipped elsewhere (another tab), expired or closed; 404: gone. Either way this task
    // is dead: say so outside the dialog and offer the next one.
    var gone = e.detail.xhr.status === 409 || e.detail.xhr.status === 404;
    if (dialog && gone) { dialog.close(); }
    showError(t, message, !!dialog && !gone, gone);
  });

  document.addEventListener("htmx:sendError", function () {
    var t = task();
    if (t) { showError(t, "Could not reach the server. Check your connection and try again."); }
  });

  function boot() {
    if (window.htmx) {
      window.htmx.onLoad(function (el) {
        init(el.id === "task" ? el : el.querySelector && el.querySelector("#task"));
      });
    }
    init(task());
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", boot); } else { boot(); }
})();
