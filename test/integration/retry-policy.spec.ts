/**
 * The shipped retry policy against a real broker: a call that timed out is not sent again while its
 * first run goes on (a registration or a password change ran up to four times under load), unless the
 * action may run twice at once (mixins/retry-policy.ts). Which errors are retried: test/unit/errors.spec.ts (mayRetry).
 */
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";

const runs: Record<string, number> = {};
const slowly = (name: string) => async (ctx: Context<{ ms: number }>) => {
	runs[name] = (runs[name] ?? 0) + 1;
	await new Promise((r) => setTimeout(r, ctx.params.ms));
	return runs[name];
};
const Slow: ServiceSchema = {
	name: "slow",
	actions: {
		write: { rest: "POST /slow", handler: slowly("write") },
		once: { repeatable: false, handler: slowly("once") },
		read: { rest: "GET /slow", handler: slowly("read") },
		internal: { handler: slowly("internal") },
		cancel: { rest: "POST /slow/cancel", repeatable: true, handler: slowly("cancel") },
	},
};

describe("the broker's retry policy", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [Slow], noGateway: true });
	});
	afterAll(() => shop.stop());

	const timeOut = async (action: string) => {
		await expect(shop.broker.call(action, { ms: 400 }, { timeout: 100 })).rejects.toMatchObject({ name: "RequestTimeoutError" });
		// Long enough for every retry the policy allows (3, 100-400 ms apart) to have started.
		await new Promise((r) => setTimeout(r, 1200));
	};

	test("a timed-out write at a route runs once: it is not sent again while its first run goes on", async () => {
		await timeOut("slow.write");
		await timeOut("slow.once");
		expect(runs).toMatchObject({ write: 1, once: 1 });
	});

	test("a timed-out read, internal call or repeatable write is sent again (another node may answer it)", async () => {
		await timeOut("slow.read");
		await timeOut("slow.internal");
		await timeOut("slow.cancel");
		expect(runs).toMatchObject({ read: 4, internal: 4, cancel: 4 });
	}, 15_000);
});
