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
