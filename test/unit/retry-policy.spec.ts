/** Which actions a timed-out call may be sent to again: GET routes, internal actions, or as marked. */
import { Errors, type ServiceBroker } from "moleculer";
import { isRepeatable, retryPolicyCheck } from "../../mixins/retry-policy";

test.each([
	["a GET route", { rest: "GET /products" }, true],
	["a HEAD route", { rest: "HEAD /products" }, true],
	["a GET route as an object", { rest: { method: "GET", path: "/search" } }, true],
	["a write route marked repeatable (a cancel)", { rest: "POST /orders/:id/cancel", repeatable: true }, true],
	["internal (keyed by its order)", {}, true],
	["internal, marked not repeatable", { repeatable: false }, false],
	["a GET route marked not repeatable", { rest: "GET /x", repeatable: false }, false],
	["a POST route", { rest: "POST /auth/register" }, false],
	["a PATCH route", { rest: "PATCH /me" }, false],
	["GET and POST routes: not every one a read", { rest: ["GET /x", "POST /x"] }, false],
	["a path only (any method)", { rest: "/anything" }, false],
	["unknown", undefined, false],
])("%s → %p", (_what, action, expected) => {
	expect(isRepeatable(action as never)).toBe(expected);
});

test("the check reads the action from the registry, and sends nothing again while cut off from the transporter", () => {
	const { check, middleware } = retryPolicyCheck();
	const transit = { connected: true };
	const actions: Record<string, object> = { "products.list": { rest: "GET /products" }, "users.register": { rest: "POST /auth/register" } };
	const broker = { started: true, stopping: false, transit, registry: { getActionEndpoints: (name: string) => (actions[name] ? { endpoints: [{ action: actions[name] }] } : null) } };
	(middleware as { created(b: ServiceBroker): void }).created(broker as unknown as ServiceBroker);
	const timedOut = (action: string) => new Errors.RequestTimeoutError({ action, nodeID: "node-2" });
	expect(check(timedOut("products.list"))).toBe(true);
	expect(check(timedOut("users.register"))).toBe(false);
	expect(check(new Errors.RequestRejectedError({ action: "users.register", nodeID: "node-2" }))).toBe(true);
	transit.connected = false;
	expect(check(timedOut("products.list"))).toBe(false);
	expect(check(new Errors.RequestRejectedError({ action: "users.register", nodeID: "node-2" }))).toBe(false);
});
