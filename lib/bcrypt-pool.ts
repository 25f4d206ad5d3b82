/**
 * bcrypt off the main thread. bcryptjs is plain JavaScript: at the shop's cost (12) a hash or a
 * compare is ~0.25 s of CPU, and on the main thread (in chunks of up to 100 ms) every login,
 * registration and password change held up every other request of the process for that long: a
 * checkout answered 100-200 ms later whenever someone signed in. Here it runs on worker threads, at
 * most `size` at once; the others wait their turn, in order. Workers start on first use and stop
 * after `idleMs` without work; they keep the process alive only while they have work.
 */
import { Worker } from "node:worker_threads";

export interface BcryptPool {
	hash(data: string, cost: number): Promise<string>;
	compare(data: string, hash: string): Promise<boolean>;
	/** Stops the workers; work still waiting is refused. */
	close(): Promise<void>;
	/** Workers running now (for tests and diagnostics). */
	readonly workers: number;
}

interface Job {
	op: "hash" | "compare";
	a: string;
	b: string | number;
	resolve(value: unknown): void;
	reject(err: Error): void;
}
interface Slot {
	worker: Worker;
	job: Job | null;
}

// The worker's whole program: synchronous bcrypt, one job at a time. bcryptjs by its resolved path:
// code run from a string resolves modules from the working directory, not from here.
const workerSource = (bcryptPath: string) => `
const { parentPort } = require("node:worker_threads");
const bcrypt = require(${JSON.stringify(bcryptPath)});
parentPort.on("message", ({ op, a, b }) => {
	try {
		parentPort.postMessage({ result: op === "hash" ? bcrypt.hashSync(a, b) : bcrypt.compareSync(a, b) });
	} catch (err) {
		parentPort.postMessage({ error: String((err && err.message) || err) });
	}
});
`;

export function bcryptPool(opts: { size: number; idleMs: number }): BcryptPool {
	if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError(`size must be a positive integer, got ${opts.size}`);
	const source = workerSource(require.resolve("bcryptjs"));
	const slots: Slot[] = [];
	const waiting: Job[] = [];
	let idleTimer: NodeJS.Timeout | null = null;
	let closed = false;

	const start = (): Slot => {
		const slot: Slot = { worker: new Worker(source, { eval: true }), job: null };
		slot.worker.on("message", (msg: { result?: unknown; error?: string }) => {
			const job = slot.job;
			slot.job = null;
			slot.worker.unref();
			if (job) {
				if (msg.error !== undefined) job.reject(new Error(msg.error));
				else job.resolve(msg.result);
			}
			next();
		});
		// A worker that dies takes its job with it; the next job starts another.
		const gone = (err: Error) => {
			const at = slots.indexOf(slot);
			if (at >= 0) slots.splice(at, 1);
			const job = slot.job;
			slot.job = null;
			job?.reject(err);
			next();
		};
		slot.worker.on("error", gone);
		slot.worker.on("exit", (code) => gone(new Error(`bcrypt worker stopped (exit code ${code})`)));
		slots.push(slot);
		return slot;
	};

	const run = (slot: Slot, job: Job) => {
		slot.job = job;
		slot.worker.ref();
		slot.worker.postMessage({ op: job.op, a: job.a, b: job.b });
	};

	const next = () => {
		while (waiting.length && !closed) {
			const slot = slots.find((s) => s.job === null) ?? (slots.length < opts.size ? start() : null);
			if (!slot) return;
			run(slot, waiting.shift()!);
		}
		if (slots.every((s) => s.job === null) && slots.length && !idleTimer && !closed) {
			idleTimer = setTimeout(() => {
				idleTimer = null;
				if (slots.some((s) => s.job !== null) || waiting.length) return;
				for (const s of slots.splice(0)) void s.worker.terminate();
			}, opts.idleMs);
			idleTimer.unref();
		}
	};

	const submit = <T>(op: Job["op"], a: string, b: string | number) =>
		new Promise<T>((resolve, reject) => {
			if (closed) return reject(new Error("bcrypt pool closed"));
			if (idleTimer) {
				clearTimeout(idleTimer);
				idleTimer = null;
			}
			waiting.push({ op, a, b, resolve: resolve as (v: unknown) => void, reject });
			next();
		});

	return {
		hash: (data, cost) => submit<string>("hash", data, cost),
		compare: (data, hash) => submit<boolean>("compare", data, hash),
		async close() {
			closed = true;
			if (idleTimer) clearTimeout(idleTimer);
			for (const job of waiting.splice(0)) job.reject(new Error("bcrypt pool closed"));
			await Promise.all(slots.splice(0).map((s) => s.worker.terminate()));
		},
		get workers() {
			return slots.length;
		},
	};
}
