/**
 * Reviews: moderation, verified purchases, votes, sorting, and a rating summary that always
 * equals a recount of the approved reviews, also under concurrent moderation.
 */
import { Errors, type Context, type ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { HealthMixin } from "../../mixins/health.mixin";
import "../../mixins/types";
import { FakeUsers, fakeToken } from "../helpers/fakes";

const PRODUCTS: Record<string, { isActive: boolean }> = { p1: { isActive: true }, p2: { isActive: true }, p3: { isActive: true }, archived: { isActive: false } };
const FakeProducts: ServiceSchema = {
	name: "products",
	mixins: [HealthMixin],
	actions: {
		getRef: {
			params: { idOrSlug: "string" },
			handler(ctx: Context<{ idOrSlug: string }>) {
				const id = ctx.params.idOrSlug;
				if (!PRODUCTS[id]) throw new Errors.MoleculerClientError("Product not found", 404, "NOT_FOUND");
				return { id, name: `Product ${id}`, slug: id, price: 1000, currency: "USD", image: null, isActive: PRODUCTS[id].isActive };
			},
		},
	},
};

const FakeOrders: ServiceSchema = {
	name: "orders",
	mixins: [HealthMixin],
	actions: {
		hasDeliveredProduct: {
			params: { userId: "string", productId: "string" },
			handler(ctx: Context<{ userId: string; productId: string }>) {
				if (ctx.params.userId === "u-orders-down") throw new Error("orders database unreachable");
				return { delivered: ctx.params.userId === "u-buyer" && ctx.params.productId === "p1" };
			},
		},
	},
};

const received: Array<{ name: string; payload: any }> = [];
const Listener: ServiceSchema = {
	name: "review-listener",
	events: {
		"review.created"(ctx: Context) {
			received.push({ name: "review.created", payload: ctx.params });
		},
		"review.moderated"(ctx: Context) {
			received.push({ name: "review.moderated", payload: ctx.params });
		},
	},
};

const tokenOf = (userId: string, role: "customer" | "admin" = "customer") => fakeToken(userId, role);
const admin = tokenOf("admin-1", "admin");

describe("reviews", () => {
	let shop: Shop;
	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, FakeProducts, FakeOrders, Listener, "reviews"] });
	});
	afterAll(() => shop.stop());

	const write = (userId: string, productId: string, body: Record<string, unknown>) => shop.http.post(`/api/products/${productId}/reviews`, body, { token: tokenOf(userId) });
	const moderate = (id: string, approved: boolean) => shop.http.patch(`/api/reviews/${id}/moderation`, { approved }, { token: admin });
	const rating = async (productId: string) => (await shop.http.get(`/api/products/${productId}/rating`)).body;

	/** The recount: every approved review of the product, read through the public list. */
	async function recount(productId: string) {
		const ratings: number[] = [];
		for (let page = 1; ; page++) {
			const res = await shop.http.get(`/api/products/${productId}/reviews?pageSize=100&page=${page}`);
			expect(res.status).toBe(200);
			ratings.push(...res.body.rows.map((r: any) => r.rating));
			if (page >= res.body.totalPages) break;
		}
		const histogram: Record<string, number> = { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 };
		for (const r of ratings) histogram[r]++;
		const average = ratings.length ? Math.round((ratings.reduce((a, b) => a + b, 0) / ratings.length) * 100) / 100 : 0;
		return { average, count: ratings.length, histogram };
	}

	test("a new review is pending, verified when the user received the product, and announced", async () => {
		const res = await write("u-buyer", "p1", { rating: 5, title: "  Great tee  ", body: "Soft and warm." });
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({ productId: "p1", userId: "u-buyer", rating: 5, title: "Great tee", status: "pending", isVerifiedPurchase: true, helpfulCount: 0, notHelpfulCount: 0 });
		expect(res.body.id).toEqual(expect.any(String));
		expect(res.body).not.toHaveProperty("_id");

		expect((await write("u-browser", "p1", { rating: 3 })).body.isVerifiedPurchase).toBe(false);
		// The orders service failing does not block the review: it is just not verified.
		const down = await write("u-orders-down", "p1", { rating: 4 });
		expect(down.status).toBe(201);
		expect(down.body.isVerifiedPurchase).toBe(false);

		expect(received).toContainEqual({ name: "review.created", payload: expect.objectContaining({ reviewId: res.body.id, productId: "p1", userId: "u-buyer", eventId: expect.any(String) }) });
		// Pending reviews are not shown, and not counted.
		expect((await shop.http.get("/api/products/p1/reviews")).body).toMatchObject({ rows: [], total: 0 });
		expect(await rating("p1")).toEqual({ average: 0, count: 0, histogram: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 } });
	});

	test("one review per user and product: the second is 409", async () => {
		const again = await write("u-buyer", "p1", { rating: 1 });
		expect(again.status).toBe(409);
		expect(again.body.type).toBe("ALREADY_REVIEWED");
	});

	test("404 for an unknown or archived product (writing, listing, rating), 401 without a token", async () => {
		expect((await write("u1", "nope", { rating: 4 })).status).toBe(404);
		expect((await write("u1", "archived", { rating: 4 })).status).toBe(404);
		expect((await shop.http.post("/api/products/p1/reviews", { rating: 4 })).status).toBe(401);
		// Nor are reviews or a rating shown for a product the shop does not sell.
		for (const productId of ["nope", "archived"]) {
			expect((await shop.http.get(`/api/products/${productId}/reviews`)).status).toBe(404);
			expect((await shop.http.get(`/api/products/${productId}/rating`)).status).toBe(404);
		}
		expect((await shop.http.get("/api/products/p1/rating")).status).toBe(200);
	});

	test.each([
		["rating", "0", { rating: 0 }],
		["rating", "6", { rating: 6 }],
		["rating", "3.5", { rating: 3.5 }],
		["rating", "a string", { rating: "5" }],
		["rating", "missing", {}],
		["title", "121 characters", { rating: 4, title: "t".repeat(121) }],
		["body", "5001 characters", { rating: 4, body: "b".repeat(5001) }],
		// Control characters are refused, not stored and served to every shopper.
		["body", "holding a NUL", { rating: 4, body: "Nice\u0000 fit" }],
		["body", "holding an escape sequence", { rating: 4, body: "\u001b[31mred\u001b[0m" }],
		["body", "holding a lone carriage return", { rating: 4, body: "one\rtwo" }],
		["body", "holding a C1 control", { rating: 4, body: "one\u0085two" }],
		["title", "holding a NUL", { rating: 4, title: "Great\u0000" }],
		["title", "holding a line break", { rating: 4, title: "Great\ntee" }],
		["title", "holding a tab", { rating: 4, title: "Great\ttee" }],
		// Bidirectional overrides and isolates display the rest of the line in another order than it is written.
		["title", "holding a right-to-left override after a mark", { rating: 4, title: "\u200e\u202eevil" }],
		["title", "holding a left-to-right embedding", { rating: 4, title: "a\u202ab" }],
		["title", "holding a pop directional isolate", { rating: 4, title: "fine\u2069" }],
		["body", "holding a right-to-left override", { rating: 4, body: "see photo\u202egpj.exe" }],
		["body", "holding a first-strong isolate", { rating: 4, body: "one \u2068two\u2069" }],
		["body", "holding a pop directional formatting", { rating: 4, body: "one\u202ctwo" }],
		["title", "121 characters of emoji", { rating: 4, title: "🎉".repeat(121) }],
		["body", "5001 characters of emoji", { rating: 4, body: "🎉".repeat(5001) }],
	])("422 naming %s when it is %s", async (field, _what, body) => {
		const res = await write("u-invalid", "p2", body as Record<string, unknown>);
		expect(res.status).toBe(422);
		expect(res.body.data.map((d: any) => d.field)).toContain(field);
	});

	test("a body keeps its line breaks (LF or a form's CRLF) and tabs; nothing with a control character was stored", async () => {
		const body = "Fits well.\n\nWashes fine\r\nat 40°:\tno shrinking. ✓";
		const res = await write("u-lines", "p2", { rating: 5, title: "Good — really «good»", body });
		expect(res.status).toBe(201);
		expect((await shop.http.get(`/api/reviews/${res.body.id}`, { token: tokenOf("u-lines") })).body).toMatchObject({ title: "Good — really «good»", body });
		const queue = await shop.http.get("/api/reviews?productId=p2&pageSize=100", { token: admin });
		expect(queue.status).toBe(200);
		expect(queue.body.rows.filter((r: any) => r.userId === "u-invalid")).toEqual([]);
	});

	test("lengths count characters (an emoji is one), as the refusal says; the LRM and RLM marks are taken", async () => {
		const emoji = await write("u-emoji", "p2", { rating: 5, title: "🎉".repeat(120), body: "👍".repeat(5000) });
		expect(emoji.status).toBe(201);
		expect(emoji.body).toMatchObject({ title: "🎉".repeat(120), body: "👍".repeat(5000) });
		const over = await write("u-emoji-over", "p2", { rating: 5, body: "👍".repeat(2501) + "b".repeat(2500) });
		expect(over.status).toBe(422);
		expect(over.body.data).toEqual([expect.objectContaining({ field: "body", type: "stringMax", expected: 5000, actual: 5001, message: "The 'body' field length must be less than or equal to 5000 characters long." })]);
		const marks = await write("u-marks", "p2", { rating: 4, title: "\u200fשלום\u200e ok", body: "mixed \u200eltr\u200f rtl" });
		expect(marks.status).toBe(201);
		expect(marks.body).toMatchObject({ title: "\u200fשלום\u200e ok", body: "mixed \u200eltr\u200f rtl" });
		const bidi = await write("u-bidi", "p2", { rating: 4, title: "\u202eevil" });
		expect(bidi.body.data).toEqual([expect.objectContaining({ field: "title", message: "The title must not contain line breaks, control characters or bidirectional overrides." })]);
	});

	test("a sort that is not one of the list's says which value was refused and which are allowed", async () => {
		const res = await shop.http.get("/api/products/p1/reviews?sort=newest");
		expect(res.status).toBe(422);
		expect(res.body.data).toEqual([
			expect.objectContaining({ field: "sort", type: "enumValue", actual: "newest", message: "The 'sort' field value 'newest' is not one of the allowed values: recent, helpful, rating." }),
		]);
	});

	test("limits are inclusive, and fields the client may not set are ignored", async () => {
		const res = await write("u-limits", "p2", { rating: 4, title: "t".repeat(120), body: "b".repeat(5000), status: "approved", helpfulCount: 99, isVerifiedPurchase: true, userId: "someone" });
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({ status: "pending", helpfulCount: 0, isVerifiedPurchase: false, userId: "u-limits" });
	});

	test("a pending review is visible to its author and admins only; moderation is admin only", async () => {
		const { body: review } = await write("u-author", "p3", { rating: 2 });
		expect((await shop.http.get(`/api/reviews/${review.id}`, { token: tokenOf("u-author") })).status).toBe(200);
		expect((await shop.http.get(`/api/reviews/${review.id}`, { token: admin })).status).toBe(200);
		expect((await shop.http.get(`/api/reviews/${review.id}`, { token: tokenOf("u-other") })).status).toBe(404);
		expect((await shop.http.get(`/api/reviews/${review.id}`)).status).toBe(404);

		expect((await shop.http.patch(`/api/reviews/${review.id}/moderation`, { approved: true }, { token: tokenOf("u-author") })).status).toBe(403);
		expect((await shop.http.patch(`/api/reviews/${review.id}/moderation`, {}, { token: admin })).status).toBe(422);
		expect((await moderate("missing", true)).status).toBe(404);

		const queue = await shop.http.get("/api/reviews?status=pending&productId=p3", { token: admin });
		expect(queue.body.rows.map((r: any) => r.id)).toEqual([review.id]);
		expect((await shop.http.get("/api/reviews", { token: tokenOf("u-author") })).status).toBe(403);

		const approved = await moderate(review.id, true);
		expect(approved.status).toBe(200);
		expect(approved.body.status).toBe("approved");
		expect((await shop.http.get(`/api/reviews/${review.id}`)).status).toBe(200);
		expect(await rating("p3")).toEqual({ average: 2, count: 1, histogram: { 1: 0, 2: 1, 3: 0, 4: 0, 5: 0 } });
		expect(received).toContainEqual({
			name: "review.moderated",
			payload: expect.objectContaining({ reviewId: review.id, productId: "p3", approved: true, rating: { average: 2, count: 1, histogram: { 1: 0, 2: 1, 3: 0, 4: 0, 5: 0 } } }),
		});

		// Approving again changes nothing and announces nothing.
		const before = received.length;
		expect((await moderate(review.id, true)).status).toBe(200);
		expect(received.length).toBe(before);
		expect((await rating("p3")).count).toBe(1);
	});

	test("the reviewer's account id: not shown to anonymous readers or other customers; its author and admins see it", async () => {
		PRODUCTS["p-ids"] = { isActive: true };
		const { body: review } = await write("u-private", "p-ids", { rating: 4, title: "Nice", body: "Fits well." });
		await moderate(review.id, true);
		// Every field a reader of API.md's review list expects, and the author's display name, but no account id.
		const publicFields = ["authorName", "body", "createdAt", "helpfulCount", "id", "isVerifiedPurchase", "moderatedAt", "notHelpfulCount", "productId", "rating", "status", "title"];
		for (const token of [undefined, tokenOf("u-stranger")]) {
			const listed = await shop.http.get("/api/products/p-ids/reviews", { token });
			expect(listed.status).toBe(200);
			expect(Object.keys(listed.body.rows[0]).sort()).toEqual(publicFields);
			const one = await shop.http.get(`/api/reviews/${review.id}`, { token });
			expect(Object.keys(one.body).sort()).toEqual(publicFields);
			expect(listed.text + one.text).not.toContain("u-private");
		}
		expect((await shop.http.get(`/api/reviews/${review.id}`, { token: tokenOf("u-private") })).body.userId).toBe("u-private");
		expect((await shop.http.get(`/api/reviews/${review.id}`, { token: admin })).body.userId).toBe("u-private");
		const queue = await shop.http.get("/api/reviews?productId=p-ids", { token: admin });
		expect(queue.body.rows.map((r: any) => r.userId)).toEqual(["u-private"]);
	});

	test("votes: one per user (a second replaces the first), never on one's own review", async () => {
		const { body: review } = await write("u-voted", "p2", { rating: 5 });
		const vote = (userId: string, helpful: boolean) => shop.http.post(`/api/reviews/${review.id}/votes`, { helpful }, { token: tokenOf(userId) });
		expect((await vote("u-v1", true)).status).toBe(404); // pending: nothing to vote on yet
		await moderate(review.id, true);

		expect((await vote("u-voted", true)).status).toBe(403);
		const first = await vote("u-v1", true);
		expect(first.status).toBe(201);
		expect(first.body).toEqual({ reviewId: review.id, helpful: true, helpfulCount: 1, notHelpfulCount: 0 });
		expect((await vote("u-v1", true)).body).toMatchObject({ helpfulCount: 1, notHelpfulCount: 0 });
		const flipped = await vote("u-v1", false);
		expect(flipped.status).toBe(200);
		expect(flipped.body).toMatchObject({ helpful: false, helpfulCount: 0, notHelpfulCount: 1 });
		expect((await shop.http.post(`/api/reviews/${review.id}/votes`, { helpful: "yes" }, { token: tokenOf("u-v1") })).status).toBe(422);

		// Straight to the service so that the calls really interleave (see the recount test).
		const voteNow = (userId: string, helpful: boolean) => shop.broker.call("reviews.vote", { id: review.id, helpful }, { meta: { user: { id: userId, role: "customer", sid: "s" } } });
		// 20 users at once, each voting twice (the second flips): counts equal the final votes.
		await Promise.all(
			Array.from({ length: 20 }, async (_, i) => {
				await voteNow(`u-crowd-${i}`, i % 2 === 0);
				await voteNow(`u-crowd-${i}`, i % 4 !== 0);
			}),
		);
		// One user voting both ways many times at once ends with one vote, counted once.
		await Promise.all(Array.from({ length: 10 }, (_, k) => voteNow("u-flipper", k % 2 === 0)));
		const { body: after } = await shop.http.get(`/api/reviews/${review.id}`);
		const crowdHelpful = Array.from({ length: 20 }, (_, i) => i % 4 !== 0).filter(Boolean).length;
		expect(after.helpfulCount + after.notHelpfulCount).toBe(1 + 20 + 1);
		expect([crowdHelpful, crowdHelpful + 1]).toContain(after.helpfulCount);
		const flipperFinal = (await vote("u-flipper", true)).body;
		expect(flipperFinal.helpfulCount).toBe(crowdHelpful + 1);
		expect(flipperFinal.notHelpfulCount).toBe(1 + 20 - crowdHelpful);
	}, 30_000);

	test("sorting by recent, helpful and rating, with pagination", async () => {
		PRODUCTS["p-sort"] = { isActive: true };
		const ids: Record<string, string> = {};
		for (const [user, stars] of [["s-a", 3], ["s-b", 5], ["s-c", 1], ["s-d", 4]] as const) {
			const { body } = await write(user, "p-sort", { rating: stars });
			ids[user] = body.id;
			await moderate(body.id, true);
			await new Promise((r) => setTimeout(r, 5));
		}
		for (const voter of ["x1", "x2"]) await shop.http.post(`/api/reviews/${ids["s-c"]}/votes`, { helpful: true }, { token: tokenOf(voter) });
		await shop.http.post(`/api/reviews/${ids["s-a"]}/votes`, { helpful: true }, { token: tokenOf("x1") });

		const authorOf = Object.fromEntries(Object.entries(ids).map(([user, id]) => [id, user]));
		const order = async (sort: string) => (await shop.http.get(`/api/products/p-sort/reviews?sort=${sort}`)).body.rows.map((r: any) => authorOf[r.id]);
		expect(await order("recent")).toEqual(["s-d", "s-c", "s-b", "s-a"]);
		expect(await order("helpful")).toEqual(["s-c", "s-a", "s-d", "s-b"]);
		expect(await order("rating")).toEqual(["s-b", "s-d", "s-a", "s-c"]);
		expect((await shop.http.get("/api/products/p-sort/reviews?sort=oldest")).status).toBe(422);

		const page2 = (await shop.http.get("/api/products/p-sort/reviews?sort=rating&page=2&pageSize=3")).body;
		expect(page2).toMatchObject({ total: 4, page: 2, pageSize: 3, totalPages: 2 });
		expect(page2.rows.map((r: any) => authorOf[r.id])).toEqual(["s-c"]);
		expect((await shop.http.get("/api/products/p-sort/reviews?pageSize=101")).status).toBe(422);
		// A page far beyond any list is a mistake, not a page to echo back.
		for (const page of ["1e30", "1000001"]) {
			const tooFar = await shop.http.get(`/api/products/p-sort/reviews?page=${page}`);
			expect(tooFar.status).toBe(422);
			expect(tooFar.body.data.map((d: any) => d.field)).toEqual(["page"]);
		}
		expect((await shop.http.get("/api/products/p-sort/reviews?page=1000000")).body).toMatchObject({ page: 1_000_000, rows: [] });
	});

	test("deleting: by its author or an admin; another user's is 404; the summary and a new review follow", async () => {
		PRODUCTS["p-del"] = { isActive: true };
		const a = (await write("d-a", "p-del", { rating: 5 })).body;
		const b = (await write("d-b", "p-del", { rating: 1 })).body;
		await moderate(a.id, true);
		await moderate(b.id, true);
		await shop.http.post(`/api/reviews/${a.id}/votes`, { helpful: true }, { token: tokenOf("d-b") });
		expect(await rating("p-del")).toMatchObject({ average: 3, count: 2 });

		expect((await shop.http.delete(`/api/reviews/${a.id}`, { token: tokenOf("d-b") })).status).toBe(404);
		expect((await shop.http.delete(`/api/reviews/${a.id}`, { token: tokenOf("d-a") })).status).toBe(204);
		expect((await shop.http.delete(`/api/reviews/${a.id}`, { token: tokenOf("d-a") })).status).toBe(404);
		expect(await rating("p-del")).toEqual({ average: 1, count: 1, histogram: { 1: 1, 2: 0, 3: 0, 4: 0, 5: 0 } });
		expect(received).toContainEqual({ name: "review.moderated", payload: expect.objectContaining({ reviewId: a.id, approved: false, deleted: true, rating: expect.objectContaining({ count: 1 }) }) });

		expect((await shop.http.delete(`/api/reviews/${b.id}`, { token: admin })).status).toBe(204);
		expect(await rating("p-del")).toMatchObject({ average: 0, count: 0 });
		// The unique review slot is free again.
		expect((await write("d-a", "p-del", { rating: 4 })).status).toBe(201);
	});

	test("the summary always equals a recount, through concurrent approvals, rejections and deletions", async () => {
		PRODUCTS["p-race"] = { isActive: true };
		const reviews: Array<{ id: string; userId: string }> = [];
		for (let i = 0; i < 30; i++) {
			const { body } = await write(`r-${i}`, "p-race", { rating: 1 + ((i * 7) % 5) });
			reviews.push({ id: body.id, userId: `r-${i}` });
		}
		// Straight to the service, not over HTTP: the gateway's connection handling spreads HTTP
		// requests out enough that they rarely interleave, and here they must.
		const asAdmin = { meta: { user: { id: "admin-1", role: "admin", sid: "s" } } };
		const moderateNow = (id: string, approved: boolean) => shop.broker.call("reviews.moderate", { id, approved }, asAdmin).then(() => 200, (err) => err.code);
		const deleteNow = (id: string, userId: string) => shop.broker.call("reviews.remove", { id }, { meta: { user: { id: userId, role: "customer", sid: "s" } } }).then(() => 204, (err) => err.code);

		// Everyone approved, several times at once.
		await Promise.all(reviews.flatMap((r) => [moderateNow(r.id, true), moderateNow(r.id, true), moderateNow(r.id, true)]));
		expect(await rating("p-race")).toEqual(await recount("p-race"));
		expect((await rating("p-race")).count).toBe(30);

		// Then a storm: rejections, re-approvals and deletions racing on the same reviews.
		let seed = 7;
		const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
		const ops: Array<Promise<number>> = [];
		for (let k = 0; k < 120; k++) {
			const r = reviews[Math.floor(random() * reviews.length)];
			const dice = random();
			if (dice < 0.45) ops.push(moderateNow(r.id, false));
			else if (dice < 0.9) ops.push(moderateNow(r.id, true));
			else ops.push(deleteNow(r.id, r.userId));
		}
		const statuses = await Promise.all(ops);
		expect(statuses.filter((s) => ![200, 204, 404].includes(s))).toEqual([]);
		expect(statuses).toContain(204);
		const summary = await rating("p-race");
		expect(summary).toEqual(await recount("p-race"));
		// And what products last heard (highest ratingVersion) is that same summary.
		const last = received
			.filter((e) => e.name === "review.moderated" && e.payload.productId === "p-race")
			.reduce((a, b) => (b.payload.ratingVersion > a.payload.ratingVersion ? b : a));
		expect(last.payload.rating).toEqual(summary);
	}, 60_000);

	describe("a status change cut short by a crash", () => {
		const svc = () => shop.broker.getLocalService("reviews") as any;
		/** The node dies right after the review's status change is stored, before the summary follows. */
		const dieAfterStatusChange = () => jest.spyOn(svc(), "settleSummary").mockRejectedValueOnce(new Error("node died"));
		const lastAnnounced = (productId: string) =>
			received.filter((e) => e.name === "review.moderated" && e.payload.productId === productId).reduce((a, b) => (b.payload.ratingVersion > a.payload.ratingVersion ? b : a));

		test("an approval is finished by the next start or sweep: summary counted, rating announced, and finishing again changes nothing", async () => {
			PRODUCTS["p-crash"] = { isActive: true };
			const { body: review } = await write("c-1", "p-crash", { rating: 4 });
			dieAfterStatusChange();
			expect((await moderate(review.id, true)).status).toBe(500);
			expect(await svc().db.reviews.findById(review.id)).toMatchObject({ status: "approved", summaryPending: true });
			expect((await rating("p-crash")).count).toBe(0);
			// Approving again is no help: the review is approved already.
			expect((await moderate(review.id, true)).status).toBe(200);
			expect((await rating("p-crash")).count).toBe(0);

			// A fresh one is left to its request; once stale (or at a single process's start) it is finished.
			expect(await svc().finishInterruptedChanges(60_000)).toBe(0);
			expect(await svc().finishInterruptedChanges(0)).toBe(1);
			expect(await rating("p-crash")).toEqual({ average: 4, count: 1, histogram: { 1: 0, 2: 0, 3: 0, 4: 1, 5: 0 } });
			expect(lastAnnounced("p-crash").payload).toMatchObject({ reviewId: review.id, approved: true, rating: { count: 1, average: 4 } });
			expect(await svc().db.reviews.findById(review.id)).not.toHaveProperty("summaryPending");
			expect(await svc().finishInterruptedChanges(0)).toBe(0);
			await svc().finishStatusChange(null, await svc().db.reviews.findById(review.id));
			expect(await rating("p-crash")).toEqual(await recount("p-crash"));
		});

		test("a deletion is finished too: the review and its votes removed, the summary without it", async () => {
			PRODUCTS["p-crash-del"] = { isActive: true };
			const { body: review } = await write("cd-1", "p-crash-del", { rating: 2 });
			expect((await moderate(review.id, true)).status).toBe(200);
			expect((await shop.http.post(`/api/reviews/${review.id}/votes`, { helpful: true }, { token: tokenOf("cd-voter") })).status).toBe(201);
			expect((await rating("p-crash-del")).count).toBe(1);
			dieAfterStatusChange();
			expect((await shop.http.delete(`/api/reviews/${review.id}`, { token: tokenOf("cd-1") })).status).toBe(500);
			expect(await svc().finishInterruptedChanges(0)).toBe(1);
			expect(await svc().db.reviews.findById(review.id)).toBeNull();
			expect(await svc().db.votes.count({ reviewId: review.id })).toBe(0);
			expect((await rating("p-crash-del")).count).toBe(0);
			expect(lastAnnounced("p-crash-del").payload).toMatchObject({ reviewId: review.id, deleted: true, rating: { count: 0 } });
		});
	});
});

describe("reviews with the real shop services", () => {
	let shop: Shop;
	const env = { ...process.env };
	beforeAll(async () => {
		process.env.ADMIN_EMAIL = "admin@reviews.test";
		process.env.ADMIN_PASSWORD = "admin-password-1";
		shop = await startShop();
	});
	afterAll(async () => {
		await shop?.stop();
		process.env = env;
	});

	test("a delivered order makes a verified review; approval puts the rating on the product", async () => {
		const http = shop.http;
		const adminTok = (await http.post("/api/auth/login", { email: "admin@reviews.test", password: "admin-password-1" })).body.accessToken;
		const product = await http.post("/api/products", { name: "Review Mug", price: 1250, currency: "USD", variants: [{ sku: "RV-MUG", name: "Mug", stock: 10 }] }, { token: adminTok });
		expect(product.status).toBe(201);
		const { id: productId } = product.body;
		const variantId = product.body.variants[0].id;

		const buyer = (await http.post("/api/auth/register", { email: "buyer@reviews.test", password: "buyer-password-1", firstName: "Bea", lastName: "Smith" })).body.accessToken;
		const other = (await http.post("/api/auth/register", { email: "other@reviews.test", password: "other-password-1" })).body.accessToken;
		const address = (await http.post("/api/me/addresses", { type: "shipping", line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, { token: buyer })).body;
		expect((await http.post("/api/cart/items", { variantId, quantity: 1 }, { token: buyer })).status).toBe(201);
		const order = await http.post("/api/orders", { shippingAddressId: address.id, paymentMethod: { type: "card", token: "pm_card_visa" } }, { token: buyer, headers: { "Idempotency-Key": "rv-1" } });
		expect(order.status).toBe(201);
		for (const status of ["processing", "shipped", "delivered"]) {
			expect((await http.patch(`/api/orders/${order.body.id}/status`, { status, ...(status === "shipped" ? { trackingNumber: "TRK1" } : {}) }, { token: adminTok })).status).toBe(200);
		}

		const verified = await http.post(`/api/products/${productId}/reviews`, { rating: 5, title: "Love it" }, { token: buyer });
		expect(verified.status).toBe(201);
		expect(verified.body.isVerifiedPurchase).toBe(true);
		const unverified = await http.post(`/api/products/${productId}/reviews`, { rating: 2 }, { token: other });
		expect(unverified.body.isVerifiedPurchase).toBe(false);
		// Shown under the first name and the last name's initial; one without a name, under none.
		expect(verified.body.authorName).toBe("Bea S.");
		expect(unverified.body.authorName).toBeNull();
		expect((await http.post("/api/products/not-a-product/reviews", { rating: 2 }, { token: other })).status).toBe(404);

		await http.patch(`/api/reviews/${verified.body.id}/moderation`, { approved: true }, { token: adminTok });
		await http.patch(`/api/reviews/${unverified.body.id}/moderation`, { approved: true }, { token: adminTok });
		const summary = (await http.get(`/api/products/${productId}/rating`)).body;
		expect(summary).toEqual({ average: 3.5, count: 2, histogram: { 1: 0, 2: 1, 3: 0, 4: 0, 5: 1 } });
		const shown = (await http.get(`/api/products/${productId}`)).body;
		expect(shown.rating).toMatchObject({ average: 3.5, count: 2 });
		const listed = (await http.get(`/api/products/${productId}/reviews`)).body.rows;
		expect(listed.map((r: any) => r.authorName).sort()).toEqual(["Bea S.", null]);
		expect(JSON.stringify(listed)).not.toMatch(/Smith|reviews\.test/);
	}, 60_000);

	test("a product's reviews and rating are found by its slug, as its page is (any case, or a slug it had before)", async () => {
		const http = shop.http;
		const adminTok = (await http.post("/api/auth/login", { email: "admin@reviews.test", password: "admin-password-1" })).body.accessToken;
		const product = (await http.post("/api/products", { name: "Slug Kettle", price: 3900, currency: "USD", variants: [{ sku: "RV-KETTLE", name: "Kettle", stock: 3 }] }, { token: adminTok })).body;
		const reader = (await http.post("/api/auth/register", { email: "slugs@reviews.test", password: "slugs-password-1" })).body.accessToken;

		const written = await http.post(`/api/products/${product.slug}/reviews`, { rating: 4, title: "Boils fast" }, { token: reader });
		expect(written.status).toBe(201);
		expect(written.body.productId).toBe(product.id);
		expect((await http.patch(`/api/reviews/${written.body.id}/moderation`, { approved: true }, { token: adminTok })).status).toBe(200);

		expect((await http.patch(`/api/products/${product.id}`, { slug: "slug-kettle-2" }, { token: adminTok })).status).toBe(200);
		for (const name of [product.id, "slug-kettle-2", "SLUG-KETTLE-2", product.slug]) {
			expect({ name, rating: (await http.get(`/api/products/${name}/rating`)).body }).toEqual({ name, rating: { average: 4, count: 1, histogram: { 1: 0, 2: 0, 3: 0, 4: 1, 5: 0 } } });
			expect({ name, reviews: (await http.get(`/api/products/${name}/reviews`)).body.rows.map((r: any) => r.id) }).toEqual({ name, reviews: [written.body.id] });
		}
		// One review per user and product, whichever name it was written under.
		expect((await http.post(`/api/products/${product.id}/reviews`, { rating: 1 }, { token: reader })).status).toBe(409);
		expect((await http.get("/api/products/no-such-kettle/rating")).status).toBe(404);
	}, 30_000);
});
