/** Which actions a timed-out call may be sent to again: GET routes, internal actions, or as marked. */
import { isRepeatable } from "../../mixins/retry-policy";

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
