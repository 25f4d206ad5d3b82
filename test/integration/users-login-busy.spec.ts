/**
 * A sign-in refused because bcrypt is busy (503 BUSY, "refused before anything was done") is not a
 * failed attempt: the throttle counts every attempt before its password is checked, and took none of
 * these back, so five busy moments locked the owner out for 15 minutes with the right password.
 */
import { startShop, type Shop } from "../helpers/shop";
import { registerCustomer } from "../helpers/flows";

jest.setTimeout(60_000);

describe("sign-in while bcrypt is busy", () => {
	let shop: Shop;
	// A 2 s request timeout leaves no wait for a bcrypt worker (bcryptMaxWaitMs): a third compare is refused at once.
	beforeAll(async () => {
		shop = await startShop({ services: ["users"], broker: { requestTimeout: 2000 } });
	});
	afterAll(() => shop?.stop());

	/** Tries again while refused as busy (the one worker may be starting, or busy with another test's work on a loaded machine). */
	async function unlessBusy<T extends { status: number }>(attempt: () => Promise<T>): Promise<T> {
		for (let i = 0; ; i++) {
			try {
				const res = await attempt();
				if (res.status !== 503 || i >= 50) return res;
			} catch (err) {
				if (!/ 503: /.test((err as Error).message) || i >= 50) throw err;
			}
			await new Promise((r) => setTimeout(r, 100));
		}
	}

	test("busy refusals do not count towards the lock; wrong passwords still do", async () => {
		const register = () => unlessBusy(() => registerCustomer(shop.http).then((c) => ({ ...c, status: 201 })));
		const owner = await register();
		const others = [];
		for (let i = 0; i < 4; i++) others.push(await register());
		const login = (email: string, password = "correct horse battery") => shop.http.post("/api/auth/login", { email, password });
		let busy = 0;
		for (let round = 0; round < 40 && busy < 6; round++) {
			// The others' compares take both workers; the owner's comes third.
			const [, , , , mine] = await Promise.all([...others.map((o) => login(o.email)), login(owner.email)]);
			if (mine.status === 503) {
				expect(mine.body).toMatchObject({ type: "BUSY" });
				busy++;
			} else expect(mine.status).toBe(200);
		}
		expect(busy).toBe(6);
		// Six busy refusals and the right password: signed in.
		expect((await unlessBusy(() => login(owner.email))).status).toBe(200);
		// Five wrong ones lock, as before.
		for (let i = 0; i < 5; i++) expect((await unlessBusy(() => login(owner.email, "wrong horse battery"))).status).toBe(401);
		expect((await unlessBusy(() => login(owner.email))).status).toBe(429);
	});
});
