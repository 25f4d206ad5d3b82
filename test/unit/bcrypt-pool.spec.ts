/** bcrypt on worker threads: the same hashes as bcryptjs here, a bounded number at once, in order. */
import bcrypt from "bcryptjs";
import { BcryptBusyError, bcryptPool, type BcryptPool } from "../../lib/bcrypt-pool";

let pool: BcryptPool | null = null;
afterEach(async () => {
	await pool?.close();
	pool = null;
});

const until = async (check: () => boolean) => {
	for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
	return check();
};

test("hashes and compares agree with bcryptjs on this thread, both ways", async () => {
	pool = bcryptPool({ size: 1, idleMs: 60_000 });
	const fromPool = await pool.hash("secret one", 4);
	expect(bcrypt.compareSync("secret one", fromPool)).toBe(true);
	expect(bcrypt.getRounds(fromPool)).toBe(4);
	const here = bcrypt.hashSync("secret two", 4);
	await expect(pool.compare("secret two", here)).resolves.toBe(true);
	await expect(pool.compare("secret 2", here)).resolves.toBe(false);
});

test("at most `size` workers, every job answered in order of its own result", async () => {
	pool = bcryptPool({ size: 2, idleMs: 60_000 });
	let most = 0;
	const watch = setInterval(() => (most = Math.max(most, pool!.workers)), 1);
	const jobs = Array.from({ length: 7 }, (_, i) => pool!.hash(`password ${i}`, 6));
	const hashes = await Promise.all(jobs);
	clearInterval(watch);
	hashes.forEach((h, i) => expect(bcrypt.compareSync(`password ${i}`, h)).toBe(true));
	expect(pool.workers).toBe(2);
	expect(most).toBeLessThanOrEqual(2);
});

test("a refused job is an error for its caller only, and the worker goes on", async () => {
	pool = bcryptPool({ size: 1, idleMs: 60_000 });
	// A salt of an unknown version: bcryptjs throws.
	const [bad, good] = await Promise.allSettled([pool.hash("x", "abc" as unknown as number), pool.hash("y", 4)]);
	expect(bad.status).toBe("rejected");
	expect((bad as PromiseRejectedResult).reason.message).toMatch(/Invalid salt version/);
	expect(good.status).toBe("fulfilled");
	expect(pool.workers).toBe(1);
});

test("idle workers stop, and the next job starts one again", async () => {
	pool = bcryptPool({ size: 2, idleMs: 30 });
	await Promise.all([pool.hash("a", 4), pool.hash("b", 4)]);
	expect(await until(() => pool!.workers === 0)).toBe(true);
	await expect(pool.compare("a", await pool.hash("a", 4))).resolves.toBe(true);
});

test("close refuses what still waits and what comes after", async () => {
	pool = bcryptPool({ size: 1, idleMs: 60_000 });
	const outcome = (p: Promise<unknown>) => p.then(() => "done", (err: Error) => err.message);
	const running = outcome(pool.hash("a", 8));
	const queued = outcome(pool.hash("b", 4));
	await pool.close();
	expect(await queued).toBe("bcrypt pool closed");
	// The one running went with its worker.
	expect(await running).toMatch(/bcrypt worker stopped|done/);
	await expect(pool.hash("c", 4)).rejects.toThrow("bcrypt pool closed");
	expect(pool.workers).toBe(0);
	expect(() => bcryptPool({ size: 0, idleMs: 1 })).toThrow(RangeError);
});

test("with maxWaitMs, work the queue cannot start in time is refused at once, before it starts", async () => {
	pool = bcryptPool({ size: 1, idleMs: 60_000, maxWaitMs: 1 });
	// Learns how long a job takes (a few ms at cost 8: far above 1 ms).
	await pool.hash("calibration", 8);
	const started = Date.now();
	const [first, second, third] = await Promise.allSettled([pool.hash("a", 8), pool.hash("b", 8), pool.hash("c", 8)]);
	expect(first.status).toBe("fulfilled");
	for (const refused of [second, third]) expect((refused as PromiseRejectedResult).reason).toBeInstanceOf(BcryptBusyError);
	expect(Date.now() - started).toBeLessThan(5_000);
	// The worker goes on: a job that finds it free runs.
	expect(bcrypt.compareSync("d", await pool.hash("d", 4))).toBe(true);
});

test("with maxWaitMs, a job whose turn comes too late is refused instead of run", async () => {
	pool = bcryptPool({ size: 1, idleMs: 60_000, maxWaitMs: 20 });
	// Nothing measured yet, so the second is queued; the first (cost 11: over 100 ms) holds the only worker past 20 ms.
	const [first, second] = await Promise.allSettled([pool.hash("slow", 11), pool.hash("late", 4)]);
	expect(first.status).toBe("fulfilled");
	expect((second as PromiseRejectedResult).reason).toBeInstanceOf(BcryptBusyError);
	expect(bcrypt.compareSync("again", await pool.hash("again", 4))).toBe(true);
});
