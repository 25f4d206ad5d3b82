import { CarriedSagaLog, MemorySagaLog, Saga, SagaAbortedError, type SagaJournal, type SagaStep } from "../../lib/saga";

/** A saga of named steps that records what ran; `failAt` makes that step throw. */
function recordingSaga(names: string[], failAt?: string, opts: { compensationFails?: string[] } = {}) {
	const trace: string[] = [];
	const steps: SagaStep<{ n: number }>[] = names.map((name) => ({
		name,
		async run() {
			if (name === failAt) throw new Error(`boom at ${name}`);
			trace.push(`run:${name}`);
		},
		async compensate(_ctx, cause) {
			if (opts.compensationFails?.includes(name)) throw new Error(`undo ${name} failed`);
			trace.push(`undo:${name}:${(cause as Error | undefined)?.message ?? "-"}`);
		},
	}));
	return { saga: new Saga("test", steps), trace };
}

describe("Saga", () => {
	test.each([
		// [failing step, expected trace]
		[undefined, ["run:a", "run:b", "run:c", "run:d"]],
		["a", []],
		["b", ["run:a", "undo:a:boom at b"]],
		["c", ["run:a", "run:b", "undo:b:boom at c", "undo:a:boom at c"]],
		["d", ["run:a", "run:b", "run:c", "undo:c:boom at d", "undo:b:boom at d", "undo:a:boom at d"]],
	])("failure at %s runs the compensations of the earlier steps in reverse", async (failAt, expected) => {
		const { saga, trace } = recordingSaga(["a", "b", "c", "d"], failAt);
		const run = saga.run({ n: 0 });
		if (failAt) await expect(run).rejects.toThrow(`boom at ${failAt}`);
		else await run;
		expect(trace).toEqual(expected);
	});

	test("the step's own error is rethrown unchanged", async () => {
		class Declined extends Error {
			code = 402;
		}
		const saga = new Saga<object>("t", [
			{ name: "a", run: async () => undefined },
			{ name: "b", run: async () => { throw new Declined("declined"); } },
		]);
		const err = await saga.run({}).catch((e) => e);
		expect(err).toBeInstanceOf(Declined);
		expect(err.code).toBe(402);
	});

	test("a retried saga compensates each step once and never moves forward again", async () => {
		const { saga, trace } = recordingSaga(["a", "b", "c"], "c");
		const log = new MemorySagaLog();
		await expect(saga.run({ n: 0 }, log)).rejects.toThrow("boom at c");
		await expect(saga.run({ n: 0 }, log)).rejects.toBeInstanceOf(SagaAbortedError);
		expect(await saga.compensate({ n: 0 }, log)).toEqual([]);
		expect(trace).toEqual(["run:a", "run:b", "undo:b:boom at c", "undo:a:boom at c"]);
		expect(log.journal).toEqual({ completed: ["a", "b"], compensated: ["b", "a"] });
	});

	test("after a failure even without compensations, a retry does not run any step again", async () => {
		const trace: string[] = [];
		let flaky = true;
		const saga = new Saga<object>("t", [
			{ name: "a", run: async () => void trace.push("a") },
			{ name: "b", run: async () => { if (flaky) { flaky = false; throw new Error("transient"); } trace.push("b"); } },
		]);
		const log = new MemorySagaLog();
		// A failure at the first step with a compensation-free journal leaves nothing to undo...
		await expect(saga.run({}, log)).rejects.toThrow("transient");
		expect(log.journal.completed).toEqual(["a"]);
		// ...and "a" has no compensation but still counts as compensated, so the saga is over.
		await expect(saga.run({}, log)).rejects.toBeInstanceOf(SagaAbortedError);
		expect(trace).toEqual(["a"]);
	});

	test("resuming from a journal runs only the remaining steps", async () => {
		const { saga, trace } = recordingSaga(["a", "b", "c"]);
		const log = new MemorySagaLog();
		await log.markCompleted("a");
		await saga.run({ n: 0 }, log);
		expect(trace).toEqual(["run:b", "run:c"]);
		expect(log.journal.completed).toEqual(["a", "b", "c"]);
	});

	test("a failing compensation is reported, the others still run, and it is retried later", async () => {
		const reported: string[] = [];
		const trace: string[] = [];
		let undoBFails = true;
		const saga = new Saga<object>(
			"t",
			[
				{ name: "a", run: async () => undefined, compensate: async () => void trace.push("undo:a") },
				{ name: "b", run: async () => undefined, compensate: async () => { if (undoBFails) throw new Error("refund service down"); trace.push("undo:b"); } },
				{ name: "c", run: async () => { throw new Error("boom"); } },
			],
			{ onCompensationError: (f) => reported.push(f.step) },
		);
		const log = new MemorySagaLog();
		await expect(saga.run({}, log)).rejects.toThrow("boom");
		expect(trace).toEqual(["undo:a"]);
		expect(reported).toEqual(["b"]);
		expect(log.journal.compensated).toEqual(["a"]);

		undoBFails = false;
		expect(await saga.compensate({}, log)).toEqual([]);
		expect(await saga.compensate({}, log)).toEqual([]);
		expect(trace).toEqual(["undo:a", "undo:b"]);
	});

	test("onCompensating hears of the undoing before the first compensation runs, with the saga's context", async () => {
		const trace: string[] = [];
		const saga = new Saga<{ undoing?: boolean }>(
			"t",
			[
				{ name: "a", run: async () => undefined, compensate: async (c) => void trace.push(`undo:a undoing=${c.undoing}`) },
				{ name: "b", run: async (c) => { trace.push(`run:b undoing=${c.undoing}`); throw new Error("boom"); } },
			],
			{ onCompensating: (c) => { c.undoing = true; } },
		);
		await expect(saga.run({}, new MemorySagaLog())).rejects.toThrow("boom");
		expect(trace).toEqual(["run:b undoing=undefined", "undo:a undoing=true"]);
	});

	describe("a step marked compensateIfInterrupted (its effect may have happened without it completing)", () => {
		/** Steps a, b (marked), c; `effectThenFail` makes b take effect and then fail, as when its answer is lost. */
		function interruptible(effectThenFail: boolean) {
			const trace: string[] = [];
			const step = (name: string, marked = false): SagaStep<object> => ({
				name,
				compensateIfInterrupted: marked,
				async run() {
					trace.push(`run:${name}`);
					if (name === "b" && effectThenFail) throw new Error("answer lost");
				},
				async compensate() {
					trace.push(`undo:${name}`);
				},
			});
			return { saga: new Saga<object>("t", [step("a"), step("b", true), step("c")]), trace };
		}

		test("failing, it is undone too, first, then the completed steps", async () => {
			const { saga, trace } = interruptible(true);
			const log = new MemorySagaLog();
			await expect(saga.run({}, log)).rejects.toThrow("answer lost");
			expect(trace).toEqual(["run:a", "run:b", "undo:b", "undo:a"]);
			expect(log.journal).toEqual({ completed: ["a"], compensated: ["b", "a"] });
			// Once only.
			expect(await saga.compensate({}, log)).toEqual([]);
			expect(trace).toHaveLength(4);
		});

		test("recovering a saga cut short there (its node died before the mark): compensate() undoes it too", async () => {
			const { saga, trace } = interruptible(false);
			const log = new MemorySagaLog();
			log.journal.completed.push("a");
			expect(saga.owedCompensations(await log.load()).map((s) => s.name)).toEqual(["b", "a"]);
			await saga.compensate({}, log);
			expect(trace).toEqual(["undo:b", "undo:a"]);
		});

		test("as a function, it decides from the error the saga stopped with", async () => {
			const trace: string[] = [];
			const refused = Object.assign(new Error("out of stock"), { code: 409 });
			const saga = new Saga<object>("t", [
				{ name: "a", run: async () => undefined, compensate: async () => void trace.push("undo:a") },
				{
					name: "b",
					compensateIfInterrupted: (cause) => (cause as { code?: number } | undefined)?.code !== 409,
					run: async () => {
						throw refused;
					},
					compensate: async () => void trace.push("undo:b"),
				},
			]);
			await expect(saga.run({})).rejects.toBe(refused);
			expect(trace).toEqual(["undo:a"]);
			// After a crash nothing is known about the error: it is undone.
			expect(saga.owedCompensations({ completed: ["a"], compensated: [] }).map((s) => s.name)).toEqual(["b", "a"]);
		});

		test("only where the saga stopped: a marked step not reached yet, or an unmarked one stopped at, is not undone", async () => {
			const { saga } = interruptible(false);
			expect(saga.owedCompensations({ completed: [], compensated: [] }).map((s) => s.name)).toEqual([]);
			expect(saga.owedCompensations({ completed: ["a", "b"], compensated: [] }).map((s) => s.name)).toEqual(["b", "a"]);
			expect(saga.owedCompensations({ completed: ["a", "b"], compensated: ["b"] }).map((s) => s.name)).toEqual(["a"]);
		});
	});

	test("step names must be unique", () => {
		expect(() => new Saga("t", [{ name: "a", run: async () => undefined }, { name: "a", run: async () => undefined }])).toThrow(/duplicate/);
	});
});

describe("CarriedSagaLog", () => {
	/** A stored document whose journal changes only through writes the steps make. */
	function storedDoc() {
		const doc: { saga: SagaJournal; writes: number } = { saga: { completed: [], compensated: [] }, writes: 0 };
		const write = (completed: string[], compensated: string[] = []) => {
			doc.writes++;
			doc.saga = { completed: [...new Set([...doc.saga.completed, ...completed])], compensated: [...new Set([...doc.saga.compensated, ...compensated])] };
		};
		const log = new CarriedSagaLog({ load: async () => ({ ...doc.saga }), writeCompensated: async (compensated, completed) => write(completed, compensated) });
		/** A step that updates the document and records itself in the same write. */
		const writing = (name: string): SagaStep<object> => ({
			name,
			run: async () => {
				const marks = log.carry(name);
				write(marks);
				log.carried(marks);
			},
			compensate: async () => undefined,
		});
		return { doc, log, write, writing };
	}

	test("marks ride on the steps' own writes: no write of their own", async () => {
		const { doc, log, writing } = storedDoc();
		const saga = new Saga<object>("t", [{ name: "check", run: async () => undefined }, writing("create"), writing("charge"), { name: "notify", run: async () => undefined }]);
		await saga.run({}, log);
		expect(doc.writes).toBe(2);
		// The step without a write waits for the next one; the last one waits for whoever finishes the saga.
		expect(doc.saga.completed).toEqual(["check", "create", "charge"]);
		expect(log.carry()).toEqual(["notify"]);
		expect((await log.load()).completed).toEqual(["check", "create", "charge", "notify"]);
	});

	test("a journal read back after a crash never claims a step whose write did not happen", async () => {
		const { doc, log, writing } = storedDoc();
		const saga = new Saga<object>("t", [writing("create"), { name: "charge", run: async () => { throw new Error("node died"); } }]);
		await expect(saga.run({}, log)).rejects.toThrow("node died");
		expect(doc.saga.completed).toEqual(["create"]);
		// The compensation is recorded with any marks still waiting.
		expect(doc.saga.compensated).toEqual(["create"]);
	});

	test("compensation writes carry completed marks that were still waiting", async () => {
		const { doc, log, writing } = storedDoc();
		const saga = new Saga<object>("t", [
			writing("create"),
			{ name: "reserve", run: async () => undefined, compensate: async () => undefined },
			{ name: "charge", run: async () => { throw new Error("declined"); } },
		]);
		await expect(saga.run({}, log)).rejects.toThrow("declined");
		expect(doc.saga).toEqual({ completed: ["create", "reserve"], compensated: ["reserve", "create"] });
	});
});
