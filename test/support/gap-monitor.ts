import { performance } from 'node:perf_hooks';

/**
 * The longest gap between ticks of a 10 ms interval: what a flow feels as a stalled event loop
 * (monitorEventLoopDelay missed multi-second blocks; a plain timer does not). A gap counts as a
 * block only as far as the loop was busy during it (event-loop utilization: time spent running
 * callbacks, not waiting): on a shared 2-core box the OS sometimes runs other jobs for 50-250 ms
 * while this process waits with an idle loop. Raw gaps over 50 ms are printed.
 */
export function gapMonitor() {
  let last = performance.now();
  let lastElu = performance.eventLoopUtilization();
  let longest = 0;
  let stopped = false;
  const timer = setInterval(() => {
    const now = performance.now();
    const busy = performance.eventLoopUtilization(lastElu).active;
    lastElu = performance.eventLoopUtilization();
    const gap = now - last - 10;
    if (gap > 50)
      console.log(`      (a ${gap.toFixed(0)} ms gap, the loop busy ${busy.toFixed(0)} ms of it)`);
    longest = Math.max(longest, Math.min(gap, busy));
    last = now;
  }, 10);
  return {
    stop(): number {
      clearInterval(timer);
      if (stopped) return Math.round(longest);
      stopped = true;
      console.log(`      (longest event-loop block: ${longest.toFixed(0)} ms)`);
      return Math.round(longest);
    },
  };
}
