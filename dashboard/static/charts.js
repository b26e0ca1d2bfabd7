// Draws the page's charts with uPlot (dashboard/static/uPlot.iife.min.js, MIT, vendored by
// `make dashboard-vendor`) from the JSON the server put in #chart-data (dashboard/charts.py):
// {"time": "day"|"instant", "x": [epoch seconds], "charts": [{"id", "title", "unit",
// "series": [{"label", "values"}]}]}, for "instant" also "x_range": [from, to] (the span the
// chart covers, however few samples there are) and "zone" (the IANA zone its times are
// labelled in). A chart with "kind": "histogram" has its own "x" (the centres of its bins,
// "bin" wide, in "x_unit"): one series is drawn as bars, several (one per device) as lines
// with a point per bin, which stay readable on top of each other. Each
// <figure data-chart="ID"> gets its chart, sized to its container and redrawn when that
// changes (a phone turned, a window resized); the uPlot object is kept on the figure as
// `figure.uplot` (the browser tests read its scale and tick labels).
//
// Points: uPlot leaves out the points of a line where they would crowd (a month on a
// phone), so a value with no neighbour (a day with screens between days without, one
// status in 24 h) would draw nothing at all. Such lone values always get their point.
"use strict";
(function () {
  const source = document.getElementById("chart-data");
  if (!source || typeof uPlot === "undefined") return;
  const data = JSON.parse(source.textContent);
  // Okabe-Ito colours (told apart with colour-blindness too), and a dash per line as well
  const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
  const DASHES = [[], [6, 3], [2, 3], [8, 3, 2, 3]];
  const HEIGHT = 190;
  const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
  // days are sent as their UTC midnight: label them in UTC so the date is the day itself;
  // "6 Nov" and "14:30" read the same in every country, unlike "11/6" and "2pm"
  const dayClock = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  const dayLabel = uPlot.fmtDate("{D} {MMM}");
  const timeLabel = uPlot.fmtDate("{HH}:{mm}");
  // instants are labelled in the page's zone (the server's, which may be a ?tz= choice)
  const zoneClock = data.zone ? (ts) => uPlot.tzDate(new Date(ts * 1e3), data.zone)
                              : (ts) => new Date(ts * 1e3);
  // a time axis steps by whole minutes at least (never "13:13 13:13 13:14"), and names
  // the day at midnight
  const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  function instantLabel(ts) {
    const moment = zoneClock(ts);
    return moment.getHours() === 0 && moment.getMinutes() === 0 ? dayLabel(moment)
                                                                : timeLabel(moment);
  }
  const tickLabel = data.time === "day" ? (ts) => dayLabel(dayClock(ts)) : instantLabel;

  // indices of the values with no value on either side: drawn as points whatever uPlot's
  // density rule says
  function lonePoints(values) {
    const found = [];
    for (let i = 0; i < values.length; i++) {
      if (values[i] != null && (i === 0 || values[i - 1] == null) &&
          (i === values.length - 1 || values[i + 1] == null)) found.push(i);
    }
    return found.length ? found : null;
  }

  // a histogram's bin as the legend shows it: "16–17 mm"
  function binLabel(spec, centre) {
    const digits = spec.bin < 1 ? 1 : 0;
    const unit = spec.x_unit ? (spec.x_unit === "°" ? "°" : " " + spec.x_unit) : "";
    return (centre - spec.bin / 2).toFixed(digits) + "–" + (centre + spec.bin / 2).toFixed(digits) + unit;
  }

  function xAxis(spec) {
    const axis = { stroke: "#5c6670", grid: { stroke: "#e4e8ec" }, font: "12px system-ui, sans-serif",
                   space: 56, size: 30 };
    if (spec.kind === "histogram") {
      axis.space = 40;
      axis.values = (u, ticks) => ticks.map((t) => String(+t.toFixed(2)));
    } else {
      axis.incrs = data.time === "day" ? undefined : TIME_STEPS;
      axis.values = (u, ticks) => ticks.map(tickLabel);
    }
    return axis;
  }

  function xSeries(spec) {
    if (spec.kind === "histogram") {
      return { label: spec.x_unit ? "Bin (" + spec.x_unit + ")" : "Bin",
               value: (u, value) => value == null ? "–" : binLabel(spec, value) };
    }
    return { label: data.time === "day" ? "Day" : "Time",
             value: data.time === "day" ? "{YYYY}-{MM}-{DD}" : "{YYYY}-{MM}-{DD} {HH}:{mm}" };
  }

  function ySeries(spec, line, index) {
    const percent = spec.unit === "%";
    const colour = COLOURS[index % COLOURS.length];
    const series = {
      label: line.label,
      stroke: colour,
      dash: DASHES[index % DASHES.length],
      width: 2,
      value: (u, value) => value == null ? "–" : (percent ? value.toFixed(1) + "%" : String(value)),
    };
    if (spec.kind === "histogram" && spec.series.length === 1) {
      series.paths = uPlot.paths.bars({ size: [0.9, Infinity], align: 0 });
      series.fill = colour + "99";
      series.width = 1;
      series.points = { show: false };
    } else if (spec.kind === "histogram") {
      series.points = { size: 6, fill: colour };
    } else {
      const lone = lonePoints(line.values);
      series.points = { size: 7, fill: colour, filter: (u, seriesIndex, shown) => shown ? null : lone };
    }
    return series;
  }

  function options(spec, width) {
    const percent = spec.unit === "%";
    const histogram = spec.kind === "histogram";
    const xRange = histogram ? () => [spec.x[0] - spec.bin / 2, spec.x[spec.x.length - 1] + spec.bin / 2]
                             : (data.x_range ? () => data.x_range.slice() : undefined);
    return {
      width: width,
      height: HEIGHT,
      tzDate: data.time === "day" ? dayClock : zoneClock,
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: !histogram, range: xRange },
        y: { range: (u, min, max) => [Math.min(0, min == null ? 0 : min), Math.max(max == null ? 0 : max, percent ? 10 : 1)] },
      },
      axes: [
        xAxis(spec),
        { stroke: "#5c6670", grid: { stroke: "#e4e8ec" }, font: "12px system-ui, sans-serif", size: 46,
          incrs: spec.unit === "count" ? WHOLE_STEPS : undefined,
          values: (u, ticks) => ticks.map((t) => percent ? t + "%" : String(t)) },
      ],
      series: [xSeries(spec)].concat(spec.series.map((line, index) => ySeries(spec, line, index))),
    };
  }

  document.querySelectorAll("figure[data-chart]").forEach(function (figure) {
    const spec = data.charts.find((chart) => chart.id === figure.dataset.chart);
    const holder = figure.querySelector(".plot");
    if (!spec || !holder) return;
    const x = spec.x || data.x;
    if (!x.length) {
      holder.textContent = "No data in this range.";
      return;
    }
    const plot = new uPlot(options(spec, holder.clientWidth),
                           [x].concat(spec.series.map((line) => line.values)), holder);
    figure.uplot = plot;
    new ResizeObserver(function () {
      if (holder.clientWidth && holder.clientWidth !== plot.width) {
        plot.setSize({ width: holder.clientWidth, height: HEIGHT });
      }
    }).observe(holder);
  });
})();
