/** NodeAwayMiddleware: a call that found no node waits for one (bounded), and fails as a 503, never a 404. */
import { Errors, ServiceBroker } from "moleculer";
import { NodeAwayMiddleware } from "../../mixins/node-away.middleware";
import { NotFoundError } from "../../lib/errors";

let broker: ServiceBroker;
let shelved = 0;
let brokers = 0;

afterEach(async () => {
	await broker?.stop();
});

function startBroker(waitMs: number, longGoneMs?: number) {
	// Over a transporter: alone, a missing service never comes, and nothing waits.
	broker = new ServiceBroker({ logger: false, transporter: "Fake", namespace: `node-away-${++brokers}`, middlewares: [NodeAwayMiddleware(waitMs, longGoneMs)], requestTimeout: 10_000 });
	broker.createService({
		name: "shelf",
		actions: {
			missing() {
				throw new NotFoundError("Item");
			},
			async fetchBook(ctx: any) {
				const book = await ctx.call("books.get");
				return { book, shelf: ctx.meta.shelf };
			},
			// Runs, then finds no node for a service it needs: the error as it arrives from another node.
			shelve() {
				shelved++;
				throw new Errors.ServiceNotFoundError({ action: "books.get" });
			},
		},
	});
	return broker.start();
}

const bookService = {
	name: "books",
	actions: {
		get(ctx: any) {
			ctx.meta.shelf = "top";
			return { title: "Dune" };
		},
	},
};

describe("NodeAwayMiddleware", () => {
	test("a call to a service that comes back within the wait is answered", async () => {
		await startBroker(2000);
		setTimeout(() => broker.createService(bookService), 300);
		const t0 = Date.now();
		await expect(broker.call("books.get")).resolves.toEqual({ title: "Dune" });
		expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
	});

	test("a call sent again keeps to what is left of its timeout", async () => {
		await startBroker(5000);
		setTimeout(() => broker.createService({ name: "books", actions: { async get() { await new Promise((r) => setTimeout(r, 600)); return { title: "Dune" }; } } }), 300);
		const t0 = Date.now();
		const err: any = await broker.call("books.get", {}, { timeout: 800, retries: 0 }).catch((e) => e);
		expect(err.name).toBe("RequestTimeoutError");
		// Waited ~300 ms for the node, then the ~500 ms left: not 300 + a full 800.
		expect(Date.now() - t0).toBeLessThan(1000);
	});

	test("a call sent again hands its meta to the caller, as the first would have", async () => {
		await startBroker(2000);
		setTimeout(() => broker.createService(bookService), 200);
		await expect(broker.call("shelf.fetchBook")).resolves.toEqual({ book: { title: "Dune" }, shelf: "top" });
	});

	test.each([
		["waits, then fails", 300, undefined, 300],
		["does not wait when turned off", 0, undefined, 0],
		["waits at most half the call's timeout", 5000, 400, 200],
	])("a service that does not come back %s, with code 503", async (_what, waitMs, timeout, waited) => {
		await startBroker(waitMs);
		const t0 = Date.now();
		const err: any = await broker.call("books.get", {}, timeout ? { timeout } : {}).catch((e) => e);
		const took = Date.now() - t0;
		expect({ name: err.name, code: err.code }).toEqual({ name: "ServiceNotFoundError", code: 503 });
		expect(took).toBeGreaterThanOrEqual(waited - 20);
		expect(took).toBeLessThan(waited + 250);
	});

	test("a service away for long is not waited for: 503 at once, until a node of it is back; a later absence is waited for again", async () => {
		await startBroker(300, 500);
		const callTaking = async () => {
			const t0 = Date.now();
			const err: any = await broker.call("books.get").catch((e) => e);
			return { code: err?.code, took: Date.now() - t0 };
		};
		expect((await callTaking()).took).toBeGreaterThanOrEqual(280);
		await new Promise((r) => setTimeout(r, 300));
		// Away for 600 ms now, past 500: no wait.
		expect(await callTaking()).toEqual({ code: 503, took: expect.any(Number) });
		expect((await callTaking()).took).toBeLessThan(100);

		// Back (nobody waiting for it then), and away again: that absence is young, so it is waited for.
		const books = broker.createService(bookService);
		await broker.waitForServices("books");
		await expect(broker.call("books.get")).resolves.toEqual({ title: "Dune" });
		await broker.destroyService(books);
		const again = await callTaking();
		expect(again.code).toBe(503);
		expect(again.took).toBeGreaterThanOrEqual(280);
	});

	test("alone (no transporter) a missing service never comes: no wait, 503 at once", async () => {
		broker = new ServiceBroker({ logger: false, middlewares: [NodeAwayMiddleware(2000)], requestTimeout: 10_000 });
		await broker.start();
		const t0 = Date.now();
		const err: any = await broker.call("books.get").catch((e) => e);
		expect({ name: err.name, code: err.code }).toEqual({ name: "ServiceNotFoundError", code: 503 });
		expect(Date.now() - t0).toBeLessThan(200);
	});

	test("a call whose action ran and found no node further down is not sent again: 503, once", async () => {
		await startBroker(300);
		shelved = 0;
		const err: any = await broker.call("shelf.shelve").catch((e) => e);
		expect({ name: err.name, code: err.code, action: err.data?.action }).toEqual({ name: "ServiceNotFoundError", code: 503, action: "books.get" });
		expect(shelved).toBe(1);
	});

	test("a 404 the action answered is its answer: no wait, no change", async () => {
		await startBroker(2000);
		const t0 = Date.now();
		const err: any = await broker.call("shelf.missing").catch((e) => e);
		expect({ name: err.name, code: err.code, type: err.type }).toEqual({ name: "NotFoundError", code: 404, type: "NOT_FOUND" });
		expect(Date.now() - t0).toBeLessThan(200);
	});
});
