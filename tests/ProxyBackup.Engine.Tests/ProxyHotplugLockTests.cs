using System.Diagnostics;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

/// <summary>Hot-plugs on the proxy are serialised across processes by a file lock the kernel frees with its holder.</summary>
public sealed class ProxyHotplugLockTests : IDisposable
{
    private readonly TempDirectory _dir = new("pb-hotplug");

    /// <summary>A job's turn on the proxy of this test, through the file lock every job of the test shares.</summary>
    private Task<ProxyHotplugLock.Hold> Turn(HotplugKind kind, CancellationToken ct = default) =>
        new ProxyHotplugLock(_dir.Combine("hotplug.lock")).AcquireAsync(kind, ct);

    [Fact]
    public async Task Waits_while_another_process_holds_the_lock_and_takes_it_when_that_process_dies()
    {
        var file = _dir.Combine("hotplug.lock");
        // Another appliance process in the middle of an attach: it holds the lock, then is killed.
        using var holder = Process.Start(new ProcessStartInfo("python3")
        {
            ArgumentList = { "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", file },
            RedirectStandardOutput = true,
        })!;
        Assert.Equal("held", await holder.StandardOutput.ReadLineAsync());

        var acquiring = Turn(HotplugKind.Attach);
        await Task.Delay(600);
        Assert.False(acquiring.IsCompleted);

        // The kernel drops the flock when the process dies; the test waits for it to be reaped.
        holder.Kill();
        await holder.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        using var held = await acquiring.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Two_jobs_of_one_process_take_turns()
    {
        var first = await Turn(HotplugKind.Attach);
        var second = Turn(HotplugKind.Attach);
        await Task.Delay(300);
        Assert.False(second.IsCompleted);
        first.Dispose();
        (await second.WaitAsync(TimeSpan.FromSeconds(5))).Dispose();
    }

    [Fact]
    public async Task A_detach_goes_before_the_attaches_that_waited_longer()
    {
        var held = await Turn(HotplugKind.Attach);
        var attach = Turn(HotplugKind.Attach);
        var detach = Turn(HotplugKind.Detach);
        held.Dispose();
        // The attach can have its turn only once no detach waits: by then the detach had it.
        var detachHold = await detach.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(attach.IsCompleted, "the attach that waited first went before the detach");
        detachHold.Dispose();
        (await attach.WaitAsync(TimeSpan.FromSeconds(30))).Dispose();
    }

    [Fact]
    public async Task A_waiter_cancelled_before_its_turn_leaves_the_queue()
    {
        var held = await Turn(HotplugKind.Attach);
        using var cts = new CancellationTokenSource();
        var cancelled = Turn(HotplugKind.Detach, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(TimeSpan.FromSeconds(30)));
        held.Dispose();
        // Nobody holds the lock now: the next one gets it (a cancelled waiter given the turn would keep it forever).
        (await Turn(HotplugKind.Attach).WaitAsync(TimeSpan.FromSeconds(30))).Dispose();
    }

    public void Dispose() => _dir.Dispose();
}
