import { Errors } from "moleculer";
import { ConflictError, InsufficientStockError, NotFoundError, ServiceUnavailableError, invalidField, isDuplicate, mayHaveTakenEffect, mayRetry, BusyError, breaksCircuit } from "../../lib/errors";
import { StoreUnavailableError } from "../../mixins/nedb-datafile";
import { RedisUnavailableError } from "../../adapters/redis-connection";

describe("mayHaveTakenEffect: whether a failed call may hide a done change", () => {
	test.each([
		["out of stock (409)", new InsufficientStockError({ variantId: "v", requested: 2, available: 1 }), false],
		["a conflict (409)", new ConflictError("no", "X"), false],
		["not found (404)", new NotFoundError("Variant"), false],
		["a rejected field (422)", invalidField("code", "used up"), false],
		["unavailable (503): the answer may be lost", new ServiceUnavailableError(), true],
		["a request timeout", new Errors.RequestTimeoutError({ action: "products.reserve", nodeID: "node-1" }), true],
		["a 500", new Errors.MoleculerError("boom", 500), true],
		["a plain error (a node that died)", new Error("checkout interrupted"), true],
		["nothing known", undefined, true],
	])("%s → %s", (_what, err, expected) => {
		expect(mayHaveTakenEffect(err)).toBe(expected);
	});
});

describe("isDuplicate: a write refused by a unique index", () => {
	test.each([
		["the collections' 409", new ConflictError("Duplicate orders entry", "DUPLICATE"), true],
		["another conflict", new ConflictError("taken", "CONFLICT"), false],
		["out of stock", new InsufficientStockError({ variantId: "v" }), false],
		["not an error", undefined, false],
		["null", null, false],
	])("%s → %p", (_name, err, expected) => {
		expect(isDuplicate(err)).toBe(expected);
	});
});

describe("mayRetry: what the broker's retry policy sends again", () => {
	test.each([
		["no node took it", new Errors.ServiceNotAvailableError({ action: "users.register" }), true],
		["its node left before answering", new Errors.RequestRejectedError({ action: "users.register", nodeID: "node-1" }), true],
		["a 503 from the callee", new ServiceUnavailableError(), true],
		["a timeout: the first run may still be going", new Errors.RequestTimeoutError({ action: "users.register", nodeID: "node-1" }), false],
		["a refusal", new ConflictError("taken", "EMAIL_TAKEN"), false],
		["a 500", new Errors.MoleculerError("boom", 500), false],
		["nothing known", undefined, false],
	])("%s → %p", (_what, err, expected) => {
		expect(mayRetry(err)).toBe(expected);
	});
	test("a timeout of an action safe to run twice at once is sent again", () => {
		const timedOut = (action: string) => new Errors.RequestTimeoutError({ action, nodeID: "node-1" });
		const reads = (action: string) => action === "search.query";
		expect(mayRetry(timedOut("search.query"), reads)).toBe(true);
		expect(mayRetry(timedOut("users.register"), reads)).toBe(false);
		expect(mayRetry(new ConflictError("taken", "EMAIL_TAKEN"), () => true)).toBe(false);
	});
});

describe("breaksCircuit: what counts towards opening an endpoint's circuit", () => {
	test.each([
		["a 500", new Errors.MoleculerError("boom", 500), true],
		["a timeout", new Errors.RequestTimeoutError({ action: "users.login", nodeID: "node-1" }), true],
		["a crash (no code)", new Error("undefined is not a function"), true],
		["a 503 of a dependency down", new ServiceUnavailableError(), true],
		["busy on purpose: nothing done, try again", new BusyError("Too many sign-ins at once"), false],
		["an embedded store's refused write (it retries the disk itself)", new StoreUnavailableError("The carts store cannot take writes right now"), false],
		["the same from another node (its name kept)", Object.assign(new Error("The carts store cannot take writes right now"), { name: "StoreUnavailableError", code: 503 }), false],
		["Redis unreachable (every node of the service shares it)", new RedisUnavailableError("Redis unavailable (carts), try again"), false],
		["a customer's bad input", invalidField("email", "not an email"), false],
		["a refusal", new ConflictError("taken", "EMAIL_TAKEN"), false],
	])("%s → %p", (_what, err, expected) => {
		expect(breaksCircuit(err)).toBe(expected);
	});
	test("a busy refusal is a 503 the client may retry", () => {
		expect(new BusyError("x")).toMatchObject({ code: 503, type: "BUSY", retryable: false });
	});
});
