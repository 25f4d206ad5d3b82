/** Environment variables for a suite or one service's creation (services read them when created). */
export type EnvVars = Record<string, string | undefined>;

/** Sets `vars` (undefined removes one); returns the function that puts back what was there. */
export function setEnv(vars: EnvVars): () => void {
	const apply = (values: EnvVars) => {
		for (const [k, v] of Object.entries(values)) {
			if (v === undefined) delete process.env[k];
			else process.env[k] = v;
		}
	};
	const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
	apply(vars);
	return () => apply(saved);
}

/** Runs `fn` with `vars` set, then puts back what was there. */
export function withEnv<T>(vars: EnvVars, fn: () => T): T {
	const restore = setEnv(vars);
	try {
		return fn();
	} finally {
		restore();
	}
}
