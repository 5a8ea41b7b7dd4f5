// Check the tool form in the page before it is sent (the server checks again), and show
// each problem next to its field, the same place the server's errors appear.
(function () {
  const form = document.getElementById("tool-form");
  if (!form) return;
  function check(input) {
    const field = input.closest(".field");
    const out = field && field.querySelector(".field-error");
    if (!out) return true;
    let message = "";
    if (!input.checkValidity()) {
      message = input.validationMessage;
    } else if (input.type === "number" && input.step === "1" && input.value !== "" && !/^-?\d+$/.test(input.value)) {
      message = "Enter a whole number.";
    }
    out.textContent = message;
    field.classList.toggle("invalid", !!message);
    return !message;
  }
  form.addEventListener("submit", function (event) {
    let first = null;
    form.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (input) {
      if (!check(input) && !first) first = input;
    });
    if (first) { event.preventDefault(); first.focus(); }
  });
  form.addEventListener("input", function (event) { check(event.target); });
})();
