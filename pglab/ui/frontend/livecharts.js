// pglab's live charts: one row of plotly charts in one iframe, redrawn in place.
//
// Streamlit's st.plotly_chart gives every new figure a new element id, so each live refresh
// unmounts and rebuilds every chart (Plotly.purge + newPlot, the React tree around it, the
// theme pass). Here the iframe stays: a render message with a chart whose spec string did
// not change costs nothing, and a changed one is one Plotly.react on the same div, which
// keeps the user's zoom (layout.uirevision). The "log" box of a chart switches its y axis
// here, at once, without a round trip to the server.
(function () {
  "use strict";
  const row = document.getElementById("row");
  const cells = new Map(); // chart id -> {cell, plot, spec, fig, log, box}
  let lastHeight = -1;
  let theme = null;

  function send(type, extra) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, extra), "*");
  }

  function fitHeight() {
    const h = Math.ceil(row.getBoundingClientRect().height);
    if (h !== lastHeight) {
      lastHeight = h;
      send("streamlit:setFrameHeight", { height: h });
    }
  }

  function styled(layout, log) {
    const out = Object.assign({}, layout);
    const color = (theme && theme.textColor) || "#31333f";
    const bg = (theme && theme.backgroundColor) || "#ffffff";
    out.font = Object.assign({ family: (theme && theme.font) || "sans-serif", color: color, size: 12 }, out.font);
    out.paper_bgcolor = bg;
    out.plot_bgcolor = bg;
    const grid = "rgba(128,128,128,0.2)";
    out.xaxis = Object.assign({ gridcolor: grid, zerolinecolor: grid, showgrid: false }, out.xaxis);
    out.yaxis = Object.assign({ gridcolor: grid, zerolinecolor: grid }, out.yaxis);
    if (log !== null) {
      out.yaxis.type = log ? "log" : "linear";
      if (log) Object.assign(out.yaxis, { dtick: 1, exponentformat: "power" });
      const title = (out.title && out.title.text) || "";
      out.title = Object.assign({}, out.title, { text: log ? title + " (log)" : title });
      out.uirevision = String(out.uirevision) + (log ? ":log" : ":linear");
    }
    return out;
  }

  function draw(c) {
    // the height is known once plotly has laid the chart out
    Plotly.react(c.plot, c.fig.data, styled(c.fig.layout, c.log), c.config).then(fitHeight);
  }

  function cellFor(chart) {
    let c = cells.get(chart.id);
    if (c) return c;
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.dataset.chart = chart.id;
    const plot = document.createElement("div");
    cell.appendChild(plot);
    c = { cell: cell, plot: plot, spec: null, fig: null, log: null, box: null, config: chart.config || {} };
    if (chart.log !== null && chart.log !== undefined) {
      c.log = !!chart.log;
      const label = document.createElement("label");
      label.className = "log";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = c.log;
      box.addEventListener("change", function () {
        c.log = box.checked;
        if (c.fig) draw(c);
      });
      label.appendChild(box);
      label.appendChild(document.createTextNode("log"));
      cell.appendChild(label);
      c.box = box;
    }
    cells.set(chart.id, c);
    return c;
  }

  function render(args) {
    const charts = args.charts || [];
    row.style.gridTemplateColumns = "repeat(" + (args.columns || charts.length || 1) + ", minmax(0, 1fr))";
    const keep = new Set(charts.map(function (ch) { return ch.id; }));
    for (const [id, c] of cells) {
      if (!keep.has(id)) {
        Plotly.purge(c.plot);
        c.cell.remove();
        cells.delete(id);
      }
    }
    charts.forEach(function (chart, k) {
      const c = cellFor(chart);
      if (row.children[k] !== c.cell) row.insertBefore(c.cell, row.children[k] || null);
      if (chart.spec !== c.spec) {
        c.spec = chart.spec;
        c.fig = JSON.parse(chart.spec);
        draw(c);
      }
    });
    fitHeight();
  }

  window.addEventListener("message", function (event) {
    const msg = event.data;
    if (!msg || msg.type !== "streamlit:render") return;
    const restyle = msg.theme && JSON.stringify(msg.theme) !== JSON.stringify(theme);
    if (msg.theme) theme = msg.theme;
    if (restyle) for (const c of cells.values()) if (c.fig) draw(c);
    render(msg.args || {});
  });
  window.addEventListener("resize", function () {
    for (const c of cells.values()) if (c.fig) Plotly.Plots.resize(c.plot);
    fitHeight();
  });
  send("streamlit:componentReady", { apiVersion: 1 });
})();
