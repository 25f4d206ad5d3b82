/**
 * The shipped retry policy against a real broker: a call that timed out is not sent again while its
 * first run goes on (a registration or a password change ran up to four times under load). Which
 * errors are retried: test/unit/errors.spec.ts (mayRetry).
 */
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";

let runs = 0;
const Slow: ServiceSchema = {
	name: "slow",
	actions: {
		async run(ctx: Context<{ ms: number }>) {
			runs++;
			await new Promise((r) => setTimeout(r, ctx.params.ms));
			return runs;
		},
	},
};

describe("the broker's retry policy", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [Slow], noGateway: true });
	});
	afterAll(() => shop.stop());

	test("a timed-out call runs once: it is not sent again while its first run goes on", async () => {
		runs = 0;
		await expect(shop.broker.call("slow.run", { ms: 400 }, { timeout: 100 })).rejects.toMatchObject({ name: "RequestTimeoutError" });
		// Long enough for every retry the policy allows (3, 100-400 ms apart) to have started.
		await new Promise((r) => setTimeout(r, 1200));
		expect(runs).toBe(1);
	});
});
