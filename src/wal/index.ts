export * from "./rmgr/index.js";
