/**
 * The address book's defaults and its size, over HTTP with the real users service: a customer
 * with addresses of a type has exactly one default of that type, whatever is created, changed or
 * deleted, and at most MAX_ADDRESSES addresses.
 */
import { startShop, type Shop } from "../helpers/shop";
import { MAX_ADDRESSES } from "../../mixins/user-address-book.mixin";
import type { Collection } from "../../mixins/collection";
import "../../mixins/types";

const PASSWORD = "velvet-otter-42";
const ADDRESS = { type: "shipping", line1: "1 Infinite Loop", city: "Cupertino", state: "CA", postalCode: "95014", country: "US" };
let seq = 0;

describe("address book", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: ["users"] });
	});
	afterAll(() => shop.stop());

	async function customer() {
		const res = await shop.http.post("/api/auth/register", { email: `book-${Date.now().toString(36)}-${++seq}@example.com`, password: PASSWORD });
		expect(res.status).toBe(201);
		const token: string = res.body.accessToken;
		const userId: string = res.body.user.id;
		return {
			userId,
			/** Created in order: "most recently created" has one answer. */
			add: async (body: Record<string, unknown> = {}) => {
				await new Promise((r) => setTimeout(r, 3));
				const created = await shop.http.post("/api/me/addresses", { ...ADDRESS, line1: `${++seq} Main St`, ...body }, { token });
				expect(created.status).toBe(201);
				return created.body as { id: string; type: string; isDefault: boolean };
			},
			patch: (id: string, body: Record<string, unknown>) => shop.http.patch(`/api/me/addresses/${id}`, body, { token }),
			remove: (id: string) => shop.http.delete(`/api/me/addresses/${id}`, { token }),
			post: (body: Record<string, unknown> = {}) => shop.http.post("/api/me/addresses", { ...ADDRESS, line1: `${++seq} Main St`, ...body }, { token }),
			/** The default of each type, by id (`null`: the customer has addresses of it but no default). */
			defaults: async () => {
				const rows = (await shop.http.get(`/api/me/addresses?pageSize=100`, { token })).body.rows as Array<{ id: string; type: string; isDefault: boolean }>;
				const out: Record<string, string[]> = {};
				for (const r of rows) (out[r.type] ??= []).push(...(r.isDefault ? [r.id] : []));
				return out;
			},
			count: async () => (await shop.http.get("/api/me/addresses", { token })).body.total as number,
		};
	}
	const addresses = () => (shop.broker.getLocalService("users") as unknown as { db: { user_addresses: Collection } }).db.user_addresses;

	test("deleting the default hands it to the most recently created address left of its type", async () => {
		const c = await customer();
		const a = await c.add();
		const billing = await c.add({ type: "billing" });
		const b = await c.add();
		const d = await c.add();
		expect([a.isDefault, b.isDefault, d.isDefault]).toEqual([true, false, false]);

		expect((await c.remove(a.id)).status).toBe(204);
		expect(await c.defaults()).toEqual({ shipping: [d.id], billing: [billing.id] });
		// Deleting one that is not the default changes nothing.
		const e = await c.add();
		expect(e.isDefault).toBe(false);
		expect((await c.remove(e.id)).status).toBe(204);
		expect(await c.defaults()).toEqual({ shipping: [d.id], billing: [billing.id] });
		expect((await c.remove(d.id)).status).toBe(204);
		expect(await c.defaults()).toEqual({ shipping: [b.id], billing: [billing.id] });
		expect((await c.remove(b.id)).status).toBe(204);
		expect(await c.defaults()).toEqual({ billing: [billing.id] });
		// The type starts again: its next address is its default.
		expect((await c.add()).isDefault).toBe(true);
	});

	test("a new address becomes its type's default when the type has none, also asked not to be when it is alone", async () => {
		const c = await customer();
		const alone = await c.add({ isDefault: false });
		expect(alone.isDefault).toBe(true);
		const second = await c.add({ isDefault: false });
		expect(second.isDefault).toBe(false);
		// As an address book left without a default (before this rule) has it: the next address takes it.
		await addresses().updateMany({ userId: c.userId }, { $unset: { defaultFor: true } });
		expect(await c.defaults()).toEqual({ shipping: [] });
		const third = await c.add();
		expect(third.isDefault).toBe(true);
		expect(await c.defaults()).toEqual({ shipping: [third.id] });
	});

	test("an address moved to a type without a default becomes its default; the type it left hands its default on", async () => {
		const c = await customer();
		const s1 = await c.add();
		const s2 = await c.add();
		const s3 = await c.add();
		const moved = await c.patch(s1.id, { type: "billing" });
		expect(moved.status).toBe(200);
		expect(moved.body).toMatchObject({ id: s1.id, type: "billing", isDefault: true });
		expect(await c.defaults()).toEqual({ shipping: [s3.id], billing: [s1.id] });
		// Into a type that has its default: it is not taken.
		const again = await c.patch(s2.id, { type: "billing" });
		expect(again.body).toMatchObject({ type: "billing", isDefault: false });
		expect(await c.defaults()).toEqual({ shipping: [s3.id], billing: [s1.id] });
		// Nor does a type lose its default when a non-default address leaves it.
		expect((await c.patch(s2.id, { type: "shipping" })).body.isDefault).toBe(false);
		expect(await c.defaults()).toEqual({ shipping: [s3.id], billing: [s1.id] });
		// A patch that changes nothing else leaves the defaults as they are.
		expect((await c.patch(s3.id, { city: "Palo Alto" })).body).toMatchObject({ city: "Palo Alto", isDefault: true });
		expect(await c.defaults()).toEqual({ shipping: [s3.id], billing: [s1.id] });
	});

	test("a default moved to the other type as that type's default still hands its old type's default on", async () => {
		const c = await customer();
		const s1 = await c.add();
		const s2 = await c.add();
		const b1 = await c.add({ type: "billing" });
		expect(await c.defaults()).toEqual({ shipping: [s1.id], billing: [b1.id] });
		const moved = await c.patch(s1.id, { type: "billing", isDefault: true });
		expect(moved.body).toMatchObject({ id: s1.id, type: "billing", isDefault: true });
		expect(await c.defaults()).toEqual({ shipping: [s2.id], billing: [s1.id] });
	});

	test("isDefault: false passes the default to the most recent other address of the type; the only one keeps it", async () => {
		const c = await customer();
		const s1 = await c.add();
		const s2 = await c.add();
		const s3 = await c.add();
		const b1 = await c.add({ type: "billing" });
		const declined = await c.patch(s1.id, { isDefault: false });
		expect(declined.body.isDefault).toBe(false);
		expect(await c.defaults()).toEqual({ shipping: [s3.id], billing: [b1.id] });
		expect((await c.patch(s2.id, { isDefault: true })).body.isDefault).toBe(true);
		expect(await c.defaults()).toEqual({ shipping: [s2.id], billing: [b1.id] });
		const onlyOne = await c.patch(b1.id, { isDefault: false });
		expect(onlyOne.body.isDefault).toBe(true);
		expect(await c.defaults()).toEqual({ shipping: [s2.id], billing: [b1.id] });
	});

	test("deletions in parallel, the default among them, leave exactly one default", async () => {
		const c = await customer();
		const made = [];
		for (let i = 0; i < 6; i++) made.push(await c.add());
		expect(made[0].isDefault).toBe(true);
		const gone = [made[0], made[4], made[5]];
		expect((await Promise.all(gone.map((a) => c.remove(a.id)))).map((r) => r.status)).toEqual([204, 204, 204]);
		const { shipping } = await c.defaults();
		expect(shipping).toHaveLength(1);
		expect([made[1].id, made[2].id, made[3].id]).toContain(shipping[0]);
	});

	test(`at most ${MAX_ADDRESSES} addresses: then 409 ADDRESS_BOOK_FULL with the limit, also for parallel requests`, async () => {
		const c = await customer();
		for (let i = 0; i < MAX_ADDRESSES - 3; i++) expect((await c.post()).status).toBe(201);
		// Parallel requests near the limit: however they interleave, the book never holds more.
		const burst = await Promise.all(Array.from({ length: 8 }, () => c.post({ type: "billing" })));
		for (const res of burst) {
			if (res.status !== 201) expect({ status: res.status, type: res.body.type, data: res.body.data }).toEqual({ status: 409, type: "ADDRESS_BOOK_FULL", data: { limit: MAX_ADDRESSES } });
		}
		expect(await c.count()).toBeLessThanOrEqual(MAX_ADDRESSES);
		while ((await c.count()) < MAX_ADDRESSES) expect((await c.post({ type: "billing" })).status).toBe(201);
		const full = await c.post();
		expect(full.status).toBe(409);
		expect(full.body).toMatchObject({ code: 409, type: "ADDRESS_BOOK_FULL", data: { limit: MAX_ADDRESSES }, message: expect.stringContaining(String(MAX_ADDRESSES)) });
		expect(await c.count()).toBe(MAX_ADDRESSES);
		// The billing type still has exactly one default, though refused requests came and went.
		expect((await c.defaults()).billing).toHaveLength(1);
		// Room again once one is deleted.
		const first = (await addresses().find({ userId: c.userId }, { limit: 1 }))[0];
		expect((await c.remove(first.id)).status).toBe(204);
		expect((await c.post()).status).toBe(201);
	});
});
