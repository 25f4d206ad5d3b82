/** Polls `probe` until `ok` accepts its value; fails with the last value seen. */
export async function waitFor<T>(probe: () => T | Promise<T>, ok: (v: T) => boolean, withinMs = 5_000, stepMs = 25): Promise<T> {
	const start = Date.now();
	for (;;) {
		const v = await probe();
		if (ok(v)) return v;
		if (Date.now() - start > withinMs) throw new Error(`Condition not met within ${withinMs} ms: ${JSON.stringify(v)?.slice(0, 400)}`);
		await new Promise((r) => setTimeout(r, stepMs));
	}
}

/**
 * What `promise` settles with, or `fallback` once `ms` have passed; the timer is cleared either way,
 * so a test that got its answer early does not hold its worker for the rest of `ms`.
 */
export async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
	let timer: NodeJS.Timeout | undefined;
	try {
		return await Promise.race([promise, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
	} finally {
		clearTimeout(timer);
	}
}
