/**
 * Reading a V8 CPU profile (`npm run bench -- --profile DIR` writes one for the single-process shop):
 * where the main thread spent a scenario's time. A profile covers the whole process (start-up,
 * seeding, registration, every scenario), so the summary looks at one window: by default the longest
 * stretch of seconds in which the thread was busy, which in a `--only checkout` run is the checkout
 * scenario. No I/O.
 */

interface CallFrame {
	functionName: string;
	url: string;
	lineNumber: number;
}
interface ProfileNode {
	id: number;
	callFrame: CallFrame;
	children?: number[];
}
/** The `.cpuprofile` JSON as node --cpu-prof writes it (times in µs). */
export interface CpuProfile {
	nodes: ProfileNode[];
	startTime: number;
	endTime: number;
	samples: number[];
	timeDeltas: number[];
}

export interface Share {
	name: string;
	/** Of the window's sampled time, 0..1. */
	share: number;
}
export interface ProfileSummary {
	/** Seconds from the profile's start. */
	window: { from: number; to: number };
	/** The share of the window the thread was idle (waiting in the event loop). */
	idle: number;
	byPackage: Share[];
	selfByFunction: Share[];
	inclusiveByFunction: Share[];
}

const IDLE = "(idle)";

/** Where a frame's code lives: an npm package, a file of the shop (dist/...), node's own, or V8's. */
export function packageOf(frame: CallFrame): string {
	const url = frame.url;
	if (!url) return frame.functionName || "(native)";
	const pkg = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
	if (pkg) return pkg[1];
	const dist = url.match(/\/dist\/(.*)$/);
	if (dist) return dist[1];
	return url.replace(/^file:\/\//, "");
}

export function functionOf(frame: CallFrame): string {
	const where = frame.url ? `${packageOf(frame)}:${frame.lineNumber + 1}` : "";
	return `${frame.functionName || "(anonymous)"}${where ? ` ${where}` : ""}`;
}

interface Sample {
	at: number;
	weight: number;
	node: number;
}

/** Each sample with its time (µs from the profile's start) and the time it stands for. */
function samplesOf(p: CpuProfile): Sample[] {
	const out: Sample[] = [];
	let at = 0;
	for (let i = 0; i < p.samples.length; i++) {
		at += p.timeDeltas[i] ?? 0;
		out.push({ at, weight: p.timeDeltas[i + 1] ?? 0, node: p.samples[i] });
	}
	return out;
}

/**
 * The longest run of whole seconds in which the thread was idle less than `maxIdle` of the time;
 * null when there is none.
 */
export function busyWindow(p: CpuProfile, maxIdle = 0.1): { from: number; to: number } | null {
	const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
	const seconds: Array<{ idle: number; all: number }> = [];
	for (const s of samplesOf(p)) {
		const sec = Math.floor(s.at / 1e6);
		const b = (seconds[sec] ??= { idle: 0, all: 0 });
		b.all += s.weight;
		if (frames.get(s.node)?.functionName === IDLE) b.idle += s.weight;
	}
	let best: { from: number; to: number } | null = null;
	let runStart = -1;
	for (let sec = 0; sec <= seconds.length; sec++) {
		const b = seconds[sec];
		const busy = b !== undefined && b.all > 0 && b.idle / b.all < maxIdle;
		if (busy && runStart < 0) runStart = sec;
		if (!busy && runStart >= 0) {
			if (!best || sec - runStart > best.to - best.from) best = { from: runStart, to: sec };
			runStart = -1;
		}
	}
	return best;
}

/** Self and inclusive time over the window (seconds from the profile's start), largest first. */
export function summarize(p: CpuProfile, window: { from: number; to: number }, top = 30): ProfileSummary {
	const byId = new Map(p.nodes.map((n) => [n.id, n]));
	// Each node's name once, not once per sample and caller above it.
	const nameOf = new Map(p.nodes.map((n) => [n.id, functionOf(n.callFrame)]));
	const packageOfNode = new Map(p.nodes.map((n) => [n.id, packageOf(n.callFrame)]));
	const parent = new Map<number, number>();
	for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
	const self = new Map<string, number>();
	const pkg = new Map<string, number>();
	const inclusive = new Map<string, number>();
	const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
	let total = 0;
	let idle = 0;
	const [from, to] = [window.from * 1e6, window.to * 1e6];
	for (const s of samplesOf(p)) {
		if (s.at < from || s.at >= to) continue;
		const node = byId.get(s.node);
		if (!node) continue;
		total += s.weight;
		if (node.callFrame.functionName === IDLE) idle += s.weight;
		add(self, nameOf.get(s.node)!, s.weight);
		add(pkg, packageOfNode.get(s.node)!, s.weight);
		// A function counts once per sample however deep its recursion.
		const seen = new Set<string>();
		for (let id: number | undefined = s.node; id !== undefined; id = parent.get(id)) {
			const name = nameOf.get(id)!;
			if (!seen.has(name)) add(inclusive, name, s.weight);
			seen.add(name);
		}
	}
	const ranked = (m: Map<string, number>): Share[] =>
		[...m]
			.sort((a, b) => b[1] - a[1])
			.slice(0, top)
			.map(([name, v]) => ({ name, share: total ? v / total : 0 }));
	return {
		window,
		idle: total ? idle / total : 0,
		byPackage: ranked(pkg),
		selfByFunction: ranked(self),
		inclusiveByFunction: ranked(new Map([...inclusive].filter(([name]) => name !== "(root)"))),
	};
}

/** The summary as Markdown tables. */
export function summaryTables(s: ProfileSummary): string {
	const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
	const table = (title: string, rows: Share[]) => [`| ${title} | share |`, "|---|---:|", ...rows.map((r) => `| ${r.name.replace(/\|/g, "\\|")} | ${pct(r.share)} |`)].join("\n");
	return [
		`Window: ${s.window.from}–${s.window.to} s of the profile; the thread was idle ${pct(s.idle)} of it.`,
		table("where (self time)", s.byPackage),
		table("function (self time)", s.selfByFunction),
		table("function (with what it calls)", s.inclusiveByFunction),
	].join("\n\n");
}
