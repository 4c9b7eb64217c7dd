import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  MetricReader,
} from '@opentelemetry/sdk-metrics'
import { vi } from 'vitest'

/** A metric reader that collects only when a test asks (no timer). */
class ManualReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** The real OpenTelemetry SDK, collected by hand into an in-memory exporter. */
export interface OtelHarness {
  readonly meterProvider: MeterProvider
  /** Collects every instrument now, exports the result to the in-memory exporter, and returns the data points by metric name. */
  collect(): Promise<Map<string, { unit: string; points: DataPoint<unknown>[] }>>
  shutdown(): Promise<void>
}

/** A MeterProvider with a manual reader and an {@link InMemoryMetricExporter} (cumulative). */
export function otelHarness(): OtelHarness {
  const reader = new ManualReader()
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const meterProvider = new MeterProvider({ readers: [reader] })
  return {
    meterProvider,
    async collect() {
      const { resourceMetrics, errors } = await reader.collect()
      if (errors.length > 0) throw errors[0]
      exporter.reset()
      const exported = new Promise<void>((resolve) =>
        exporter.export(resourceMetrics, () => resolve()),
      )
      // The exporter answers from a setTimeout(0): under the fake clock, run it.
      if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(0)
      await exported
      const out = new Map<string, { unit: string; points: DataPoint<unknown>[] }>()
      for (const exported of exporter.getMetrics()) {
        for (const scope of exported.scopeMetrics) {
          for (const metric of scope.metrics) {
            out.set(metric.descriptor.name, {
              unit: metric.descriptor.unit,
              points: metric.dataPoints as DataPoint<unknown>[],
            })
          }
        }
      }
      return out
    },
    shutdown: () => meterProvider.shutdown(),
  }
}
