/**
 * Refuses `null` in an optional field whose rule does not take it (see lib/param-rules.ts), with
 * the same 422 as any other invalid field, before the action's own validation runs.
 */
import type { Middleware } from "moleculer";
import { nullFieldsCheck } from "../lib/param-rules";
import { UnprocessableError } from "../lib/errors";

export function NullFieldsMiddleware(): Middleware {
	return {
		name: "NullFields",
		localAction(next: (ctx: any) => Promise<unknown>, action: { name: string; params?: unknown }) {
			if (!action.params || typeof action.params !== "object") return next;
			const check = nullFieldsCheck(action.params as Record<string, unknown>);
			if (!check) return next;
			return (ctx: any) => {
				const problems = check(ctx.params);
				if (problems.length) return Promise.reject(new UnprocessableError("Parameters validation error!", problems));
				return next(ctx);
			};
		},
	} as Middleware;
}
