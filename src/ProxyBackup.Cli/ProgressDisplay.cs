using ProxyBackup.Repository;
using Spectre.Console;

namespace ProxyBackup.Cli;

/// <summary>
/// Shows long work: a live bar (bytes, MB/s, ETA) on a terminal, a line every few seconds
/// otherwise (logs, pipes, CI), so that progress is never silent and never floods.
/// </summary>
public static class ProgressDisplay
{
    public static async Task<T> RunAsync<T>(string title, Func<IProgress<TransferProgress>, Task<T>> work)
    {
        // Redirected is known at once; the console's own detection is left for a terminal.
        var console = Console.IsErrorRedirected ? null : AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        if (console is null || !console.Profile.Capabilities.Interactive)
        {
            var lines = new LineProgress();
            var result = await work(lines).ConfigureAwait(false);
            lines.Finish();
            return result;
        }
        T value = default!;
        await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: 1);
                var sink = new Progress<TransferProgress>(p =>
                {
                    task.Description = Markup.Escape(p.What);
                    task.MaxValue = Math.Max(1, p.TotalBytes);
                    task.Value = p.DoneBytes;
                });
                value = await work(sink).ConfigureAwait(false);
                task.Value = task.MaxValue;
            }).ConfigureAwait(false);
        return value;
    }

    private sealed class LineProgress : IProgress<TransferProgress>
    {
        private readonly object _gate = new();
        private DateTime _last = DateTime.MinValue;
        private TransferProgress? _latest;

        public void Report(TransferProgress value)
        {
            lock (_gate)
            {
                _latest = value;
                if (DateTime.UtcNow - _last < TimeSpan.FromSeconds(2)) return;
                _last = DateTime.UtcNow;
                Console.Error.WriteLine(value);
            }
        }

        public void Finish()
        {
            lock (_gate)
                if (_latest is not null) Console.Error.WriteLine(_latest);
        }
    }
}
