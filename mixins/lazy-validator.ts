/**
 * fastest-validator (Moleculer's default), compiling each action's param schema on its first call
 * instead of at start. Compiling all ~150 schemas took ~150 ms of every node's ~1 s start, most of
 * them for actions a node rarely or never serves. A schema mistake now shows on the action's first
 * call rather than at start: test/unit/param-schemas.spec.ts compiles every service's schemas.
 * A refused secret's value is redacted from the problems it reports (lib/trace-tags.ts).
 */
import { Validators } from "moleculer";
import { redactRefusedValue } from "../lib/trace-tags";

type Check = ReturnType<Validators.Fastest["compile"]>;

const redacted = (res: unknown) => (Array.isArray(res) ? res.map(redactRefusedValue) : res);

export class LazyFastestValidator extends Validators.Fastest {
	compile(schema: Record<string, any>): Check {
		let compiled: Check | undefined;
		const check: Check = (params, opts) => {
			const res: unknown = (compiled ??= super.compile(schema))(params, opts);
			if (res === true) return res;
			return (res instanceof Promise ? res.then(redacted) : redacted(res)) as boolean;
		};
		// Read by Moleculer's middleware before the first call: fastest-validator's own rule for it.
		check.async = schema.$$async === true;
		return check;
	}
}
