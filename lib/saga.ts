/**
 * A small saga orchestrator: an ordered list of steps, each with its compensation next to it.
 * When step k fails, the compensations of the completed steps k-1..1 run in reverse order.
 * A journal (the SagaLog) records which steps completed and which were compensated, so running the
 * saga or its compensation again skips what was already done: every step and every compensation
 * takes effect once, even across retries or a restart (when the log is persisted).
 * A step whose effect lives elsewhere can fail or be cut short after that effect happened (its answer
 * lost, its node dead before the mark was written); marked `compensateIfInterrupted`, it is undone
 * too when it is where the saga stopped.
 */

export interface SagaStep<C> {
	name: string;
	run(ctx: C): Promise<void>;
	/** Undoes `run`; receives the error that aborted the saga. Must be safe to call again. */
	compensate?(ctx: C, cause: unknown): Promise<void>;
	/**
	 * `run` may have taken effect without completing: when the saga stops at this step (it failed,
	 * or it is the first step without a mark), its compensation runs as well. That compensation must
	 * be safe when `run` did nothing, and when `run` takes effect after it. A function decides from
	 * the error the saga stopped with (none known after a crash) whether the step may have had effect.
	 */
	compensateIfInterrupted?: boolean | ((cause: unknown) => boolean);
}

export interface SagaJournal {
	completed: string[];
	compensated: string[];
}

/** Where the journal lives: in memory for tests, on the business document in a service. */
export interface SagaLog {
	load(): Promise<SagaJournal>;
	markCompleted(step: string): Promise<void>;
	markCompensated(step: string): Promise<void>;
}

export class MemorySagaLog implements SagaLog {
	readonly journal: SagaJournal = { completed: [], compensated: [] };
	async load(): Promise<SagaJournal> {
		return { completed: [...this.journal.completed], compensated: [...this.journal.compensated] };
	}
	async markCompleted(step: string): Promise<void> {
		if (!this.journal.completed.includes(step)) this.journal.completed.push(step);
	}
	async markCompensated(step: string): Promise<void> {
		if (!this.journal.compensated.includes(step)) this.journal.compensated.push(step);
	}
}

/** Where a CarriedSagaLog reads the stored journal and records compensations. */
export interface SagaJournalStore {
	load(): Promise<Partial<SagaJournal> | null>;
	/** Stores the compensated marks, with completed marks not stored yet. */
	writeCompensated(compensated: string[], completed: string[]): Promise<void>;
}

/**
 * A journal whose completion marks ride on the steps' own writes: a step that updates the business
 * document records its mark in that same atomic update (`carry`, then `carried` once stored), so the
 * journal never claims a step whose effect is not stored, nor misses one that is, and costs no write
 * of its own. A step without a write of its own has its mark carried by the next write: such steps
 * must be safe to run again (after a crash they may be).
 */
export class CarriedSagaLog implements SagaLog {
	private unwritten: string[] = [];
	private readonly written = new Set<string>();
	private readonly compensated: string[] = [];

	constructor(private readonly store: SagaJournalStore) {}

	async load(): Promise<SagaJournal> {
		const stored = await this.store.load();
		const union = (a: string[] = [], b: string[] = []) => [...new Set([...a, ...b])];
		return { completed: union(stored?.completed, this.unwritten), compensated: union(stored?.compensated, this.compensated) };
	}

	async markCompleted(step: string): Promise<void> {
		if (!this.written.has(step) && !this.unwritten.includes(step)) this.unwritten.push(step);
	}

	async markCompensated(step: string): Promise<void> {
		if (!this.compensated.includes(step)) this.compensated.push(step);
		const completed = this.carry();
		await this.store.writeCompensated([...this.compensated], completed);
		this.carried(completed);
	}

	/** The completion marks a write should record: those waiting and, when given, the writing step's own. */
	carry(step?: string): string[] {
		return step && !this.written.has(step) && !this.unwritten.includes(step) ? [...this.unwritten, step] : [...this.unwritten];
	}

	/** The write carrying `marks` is stored. */
	carried(marks: string[]): void {
		for (const m of marks) this.written.add(m);
		this.unwritten = this.unwritten.filter((m) => !this.written.has(m));
	}
}

export interface CompensationFailure {
	step: string;
	error: unknown;
}

export interface SagaOptions<C = unknown> {
	/** Told before compensations run, e.g. to let them outlive a deadline the forward steps kept to. */
	onCompensating?(ctx: C): void;
	/** Told about a compensation that threw; it stays pending and runs again on the next compensate(). */
	onCompensationError?(failure: CompensationFailure): void;
}

/** Thrown by run() when a saga that was already compensated is run again: it never moves forward twice. */
export class SagaAbortedError extends Error {
	constructor(readonly saga: string) {
		super(`Saga ${saga} was already compensated`);
		this.name = "SagaAbortedError";
	}
}

export class Saga<C> {
	constructor(readonly name: string, readonly steps: SagaStep<C>[], private readonly opts: SagaOptions<C> = {}) {
		const names = new Set<string>();
		for (const s of steps) {
			if (names.has(s.name)) throw new Error(`Saga ${name}: duplicate step name ${s.name}`);
			names.add(s.name);
		}
	}

	/**
	 * Runs the steps not yet completed. On a failure compensates the completed ones and rethrows the
	 * step's own error, so callers see the business error (402, 409...) unchanged.
	 */
	async run(ctx: C, log: SagaLog = new MemorySagaLog()): Promise<void> {
		const journal = await log.load();
		if (journal.compensated.length > 0) throw new SagaAbortedError(this.name);
		for (const step of this.steps) {
			if (journal.completed.includes(step.name)) continue;
			try {
				await step.run(ctx);
			} catch (err) {
				await this.compensate(ctx, log, err);
				throw err;
			}
			await log.markCompleted(step.name);
		}
	}

	/**
	 * The compensations still owed, last first: those of the completed steps and of the step the saga
	 * stopped at (the first without a mark) when it may have taken effect, minus those done.
	 */
	owedCompensations(journal: SagaJournal, cause?: unknown): SagaStep<C>[] {
		const stoppedAt = this.steps.find((s) => !journal.completed.includes(s.name));
		const interrupted = (s: SagaStep<C>) => (typeof s.compensateIfInterrupted === "function" ? s.compensateIfInterrupted(cause) : s.compensateIfInterrupted === true);
		const owed = (s: SagaStep<C>) => journal.completed.includes(s.name) || (s === stoppedAt && interrupted(s));
		return [...this.steps].reverse().filter((s) => owed(s) && !journal.compensated.includes(s.name));
	}

	/**
	 * Runs the compensations still owed (see owedCompensations). A compensation that throws is
	 * reported and left pending; the others still run. Returns the failures (empty when all done).
	 */
	async compensate(ctx: C, log: SagaLog, cause?: unknown): Promise<CompensationFailure[]> {
		const failures: CompensationFailure[] = [];
		this.opts.onCompensating?.(ctx);
		for (const step of this.owedCompensations(await log.load(), cause)) {
			try {
				if (step.compensate) await step.compensate(ctx, cause);
				await log.markCompensated(step.name);
			} catch (error) {
				failures.push({ step: step.name, error });
				this.opts.onCompensationError?.({ step: step.name, error });
			}
		}
		return failures;
	}
}
