/**
 * Worker thread of `tideline waldump --stats`: takes ranges of a {@link StatsJob} one after
 * another from a counter shared with the other threads, decodes them, and posts all its
 * results in one message before it ends. See `waldump_parallel.ts`.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { claimRanges, type WorkerInput } from "./waldump_parallel.js";

const input = workerData as WorkerInput;
parentPort!.postMessage(await claimRanges(input.job, input.control));
