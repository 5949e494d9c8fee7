namespace ProxyBackup.Repository;

/// <summary>Where a long transfer stands: what the CLI's progress bar and the daemon's log show.</summary>
/// <param name="NewBytes">What a backup stored that the repository did not have; null for transfers that store nothing (restore, verify).</param>
public sealed record TransferProgress(string What, long TotalBytes, long DoneBytes, long? NewBytes, TimeSpan Elapsed)
{
    public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? DoneBytes / Elapsed.TotalSeconds : 0;

    /// <summary>What an operation (or a daemon job before it starts) reports while it waits for memory others hold (<see cref="ChunkMemory"/>).</summary>
    public static TransferProgress WaitingForMemory(string what, long totalBytes = 0, long? newBytes = null) =>
        new($"{what} (waiting for memory other jobs hold)", totalBytes, 0, newBytes, TimeSpan.Zero);

    public TimeSpan? Eta => BytesPerSecond > 0 && TotalBytes >= DoneBytes
        ? TimeSpan.FromSeconds((TotalBytes - DoneBytes) / BytesPerSecond) : null;

    public double Fraction => TotalBytes > 0 ? (double)DoneBytes / TotalBytes : 1;

    public override string ToString() =>
        $"{What}: {DoneBytes / 1048576.0:0} / {TotalBytes / 1048576.0:0} MiB ({Fraction:P0}), {BytesPerSecond / 1e6:0.0} MB/s" +
        (NewBytes is { } stored ? $", new {stored / 1048576.0:0.0} MiB" : "") +
        (Eta is { } eta ? $", ETA {eta:hh\\:mm\\:ss}" : "");
}

/// <summary>Counts bytes from several workers and reports at most a few times a second.</summary>
internal sealed class ProgressMeter(string what, long total, IProgress<TransferProgress>? sink, bool storesData = false)
{
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    private long _done;
    private long _new;
    private long _lastReport = -1000; // the first update is reported at once

    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Reports that the transfer waits for memory other operations hold; <see cref="Start"/> begins the count once it has it.</summary>
    public void ReportWaitingForMemory() => sink?.Report(TransferProgress.WaitingForMemory(what, total, storesData ? 0 : null));

    public void Start() => _clock.Restart();

    public void Add(long done, long newBytes)
    {
        Interlocked.Add(ref _done, done);
        Interlocked.Add(ref _new, newBytes);
        if (sink is null) return;
        var now = _clock.ElapsedMilliseconds;
        var last = Interlocked.Read(ref _lastReport);
        if (now - last >= 250 && Interlocked.CompareExchange(ref _lastReport, now, last) == last) Report();
    }

    public void Report() => sink?.Report(new TransferProgress(what, total, Interlocked.Read(ref _done), storesData ? Interlocked.Read(ref _new) : null, _clock.Elapsed));
}
