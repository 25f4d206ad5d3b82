/**
 * bcrypt off the main thread. bcryptjs is plain JavaScript: at the shop's cost (12) a hash or a
 * compare is ~0.25 s of CPU, and on the main thread (in chunks of up to 100 ms) every login,
 * registration and password change held up every other request of the process for that long: a
 * checkout answered 100-200 ms later whenever someone signed in. Here it runs on worker threads, at
 * most `size` at once; the others wait their turn, in order. Workers start on first use and stop
 * after `idleMs` without work; they keep the process alive only while they have work.
 *
 * With `maxWaitMs`, work that would wait longer for its turn is refused (BcryptBusyError) before it
 * starts, at once when the queue already holds more than that, else when its turn comes too late. A
 * burst of sign-ins then gets a quick "try again" with nothing done, instead of hashing on past the
 * caller's timeout: the caller saw a failure for a password that was changed, an account that exists.
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

/** Refused before it started: the queue was longer than `maxWaitMs`. */
export class BcryptBusyError extends Error {
	constructor(waitMs: number) {
		super(`bcrypt work would wait ${Math.round(waitMs)} ms for a worker`);
		this.name = "BcryptBusyError";
	}
}

interface Job {
	op: "hash" | "compare";
	a: string;
	b: string | number;
	queuedAt: number;
	resolve(value: unknown): void;
	reject(err: Error): void;
}
interface Slot {
	worker: Worker;
	job: Job | null;
	startedAt: number;
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

export function bcryptPool(opts: { size: number; idleMs: number; maxWaitMs?: number }): BcryptPool {
	if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError(`size must be a positive integer, got ${opts.size}`);
	const source = workerSource(require.resolve("bcryptjs"));
	const slots: Slot[] = [];
	const waiting: Job[] = [];
	let idleTimer: NodeJS.Timeout | null = null;
	let closed = false;
	/** How long a job takes on a worker (moving average): the queue's wait in time. */
	let jobMs = 0;

	const start = (): Slot => {
		const slot: Slot = { worker: new Worker(source, { eval: true }), job: null, startedAt: 0 };
		slot.worker.on("message", (msg: { result?: unknown; error?: string }) => {
			const took = Date.now() - slot.startedAt;
			jobMs = jobMs ? jobMs * 0.8 + took * 0.2 : took;
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
		slot.startedAt = Date.now();
		slot.worker.ref();
		slot.worker.postMessage({ op: job.op, a: job.a, b: job.b });
	};

	const next = () => {
		while (waiting.length && !closed) {
			const free = slots.find((s) => s.job === null);
			if (!free && slots.length >= opts.size) return;
			const job = waiting.shift()!;
			// Its wait for a turn, not a new worker's start-up.
			const waited = Date.now() - job.queuedAt;
			if (opts.maxWaitMs !== undefined && waited > opts.maxWaitMs) job.reject(new BcryptBusyError(waited));
			else run(free ?? start(), job);
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
			// Turns ahead of this job (the running ones count for one turn), each about jobMs long.
			const running = slots.filter((s) => s.job !== null).length;
			const wait = running < opts.size ? 0 : Math.floor(waiting.length / opts.size + 1) * jobMs;
			if (opts.maxWaitMs !== undefined && wait > opts.maxWaitMs) return reject(new BcryptBusyError(wait));
			if (idleTimer) {
				clearTimeout(idleTimer);
				idleTimer = null;
			}
			waiting.push({ op, a, b, queuedAt: Date.now(), resolve: resolve as (v: unknown) => void, reject });
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
