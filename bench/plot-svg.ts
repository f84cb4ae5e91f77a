/**
 * A small SVG line chart with two value axes, enough for the benchmark's per-round plots: x is a
 * whole number (a round), the left axis carries some series (rates), the right axis others (a
 * percentage). Ticks fall on 1, 2 or 5 × a power of ten; the legend sits under the plot in a row
 * that wraps, so labels never overlap the lines. No dependencies: the text is the SVG.
 */

/** One line of the chart. */
export interface ChartSeries {
  name: string;
  /** Which axis its values are read against. */
  axis: 'left' | 'right';
  /** A CSS colour. */
  color: string;
  /** Drawn dashed, without markers (for a reference such as an asked rate). */
  dashed?: boolean;
  points: readonly { x: number; y: number }[];
}

/** What to draw. */
export interface LineChart {
  title: string;
  /** A second, smaller line under the title. */
  subtitle?: string;
  xLabel: string;
  leftLabel: string;
  rightLabel: string;
  /** Top of the right axis; default from the data. */
  rightMax?: number;
  series: readonly ChartSeries[];
}

const WIDTH = 800;
const HEIGHT = 460;
const PLOT = { left: 80, right: WIDTH - 80, top: 72, bottom: HEIGHT - 110 };
const FONT = 'font-family="Helvetica, Arial, sans-serif"';
const LEGEND_ITEM_WIDTH = 210;

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A tick step of 1, 2 or 5 × 10^k giving about `ticks` intervals up to `max`. */
export function niceStep(max: number, ticks = 8): number {
  if (!(max > 0)) return 1;
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].find((m) => m * power >= raw) ?? 10;
  return step * power;
}

/**
 * The axis' top: the data's maximum, with 5% headroom so that a line at the maximum does not run
 * along the frame, rounded up to a whole step (at least one step).
 */
function axisTop(values: number[], fixed: number | undefined): { top: number; step: number } {
  if (fixed !== undefined) return { top: fixed, step: niceStep(fixed) };
  const max = Math.max(0, ...values) * 1.05;
  const step = niceStep(max);
  return { top: Math.max(step, Math.ceil(max / step) * step), step };
}

function formatTick(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function text(x: number, y: number, body: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${FONT} ${attrs}>${escapeXml(body)}</text>`;
}

/** The SVG document of `chart`. */
export function lineChartSvg(chart: LineChart): string {
  const all = chart.series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map((p) => p.x));
  const xStep = Math.max(1, Math.ceil(niceStep(xMax, 10)));
  const left = axisTop(
    chart.series.filter((s) => s.axis === 'left').flatMap((s) => s.points.map((p) => p.y)),
    undefined,
  );
  const right = axisTop(
    chart.series.filter((s) => s.axis === 'right').flatMap((s) => s.points.map((p) => p.y)),
    chart.rightMax,
  );
  const px = (x: number): number => PLOT.left + (x / xMax) * (PLOT.right - PLOT.left);
  const py = (y: number, axis: 'left' | 'right'): number =>
    PLOT.bottom - (Math.max(0, y) / (axis === 'left' ? left.top : right.top)) * (PLOT.bottom - PLOT.top);

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    text(WIDTH / 2, 28, chart.title, 'font-size="17" font-weight="bold" text-anchor="middle"'),
  ];
  if (chart.subtitle)
    parts.push(text(WIDTH / 2, 50, chart.subtitle, 'font-size="12" fill="#555" text-anchor="middle"'));

  for (let v = 0; v <= left.top + 1e-9; v += left.step) {
    const y = py(v, 'left');
    parts.push(
      `<line x1="${PLOT.left}" x2="${PLOT.right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e4e4e4"/>`,
    );
    parts.push(text(PLOT.left - 8, y + 4, formatTick(v), 'font-size="11" text-anchor="end"'));
  }
  for (let v = 0; v <= right.top + 1e-9; v += right.step)
    parts.push(text(PLOT.right + 8, py(v, 'right') + 4, formatTick(v), 'font-size="11" text-anchor="start"'));
  for (let x = 0; x <= xMax; x += xStep) {
    const at = px(x);
    parts.push(
      `<line x1="${at.toFixed(1)}" x2="${at.toFixed(1)}" y1="${PLOT.bottom}" y2="${PLOT.bottom + 5}" stroke="#333"/>`,
    );
    parts.push(text(at, PLOT.bottom + 19, String(x), 'font-size="11" text-anchor="middle"'));
  }
  parts.push(
    `<rect x="${PLOT.left}" y="${PLOT.top}" width="${PLOT.right - PLOT.left}" height="${PLOT.bottom - PLOT.top}" fill="none" stroke="#333"/>`,
    text((PLOT.left + PLOT.right) / 2, PLOT.bottom + 40, chart.xLabel, 'font-size="13" text-anchor="middle"'),
    verticalLabel(22, chart.leftLabel),
    verticalLabel(WIDTH - 18, chart.rightLabel),
  );

  for (const s of chart.series) {
    const coords = s.points.map((p) => `${px(p.x).toFixed(1)},${py(p.y, s.axis).toFixed(1)}`);
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    parts.push(`<polyline points="${coords.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`);
    if (!s.dashed)
      for (const c of coords) {
        const [cx, cy] = c.split(',');
        parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${s.color}"/>`);
      }
  }
  parts.push(...legend(chart.series), '</svg>');
  return `${parts.join('\n')}\n`;
}

function verticalLabel(x: number, label: string): string {
  const y = (PLOT.top + PLOT.bottom) / 2;
  return text(x, y, label, `font-size="13" text-anchor="middle" transform="rotate(-90 ${x} ${y})"`);
}

/** Legend entries in rows under the x-axis label, each a swatch of the line and its name. */
function legend(series: readonly ChartSeries[]): string[] {
  const perRow = Math.max(1, Math.floor((PLOT.right - PLOT.left) / LEGEND_ITEM_WIDTH));
  return series.flatMap((s, i) => {
    const x = PLOT.left + (i % perRow) * LEGEND_ITEM_WIDTH;
    const y = PLOT.bottom + 66 + Math.floor(i / perRow) * 20;
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    const side = s.axis === 'left' ? '' : ' (right axis)';
    return [
      `<line x1="${x}" x2="${x + 26}" y1="${y - 4}" y2="${y - 4}" stroke="${s.color}" stroke-width="2"${dash}/>`,
      text(x + 32, y, `${s.name}${side}`, 'font-size="12"'),
    ];
  });
}
