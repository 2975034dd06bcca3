using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark pool autogrow` and `tidemark volume autogrow NAME`: capacity on demand.</summary>
public static class CapacityCommands
{
    public static Command PoolAutogrow()
    {
        var (threshold, step, max, off) = Options("the pool's used space", "10G", "the pool's capacity");
        var command = new Command("autogrow", "Grow the pool's file store by a step when its use passes a threshold (without options: show the policy)") { threshold, step, max, off };
        command.SetClientAction(async (p, client, json, ct) =>
        {
            if (p.GetValue(off))
            {
                await client.DisablePoolAutogrowAsync(ct);
                VolumeCommands.Done(json, "pool autogrow is off");
                return;
            }

            var policy = Policy(p, threshold, step, max);
            var policies = policy is null ? await client.GetCapacityPoliciesAsync(ct) : await client.SetPoolAutogrowAsync(policy, ct);
            Print("pool", policies.Pool, json);
        });
        return command;
    }

    public static Command VolumeAutogrow()
    {
        var name = new Argument<string>("name") { Description = "volume name" };
        var (threshold, step, max, off) = Options("the volume's allocated space", "10G", "its virtual size");
        var command = new Command("autogrow", "Grow a volume's virtual size by a step when its allocated space passes a threshold (without options: show the policy)") { name, threshold, step, max, off };
        command.SetClientAction(async (p, client, json, ct) =>
        {
            var volume = p.GetValue(name)!;
            if (p.GetValue(off))
            {
                await client.DisableVolumeAutogrowAsync(volume, ct);
                VolumeCommands.Done(json, $"autogrow of {volume} is off");
                return;
            }

            var policy = Policy(p, threshold, step, max);
            if (policy is null)
            {
                var policies = await client.GetCapacityPoliciesAsync(ct);
                Print(volume, policies.Volumes.TryGetValue(volume, out var current) ? current : null, json);
                return;
            }

            Print(volume, await client.SetVolumeAutogrowAsync(volume, policy, ct), json);
        });
        return command;
    }

    private static (Option<int?> Threshold, Option<string?> Step, Option<string?> Max, Option<bool> Off) Options(string used, string defaultStep, string capacity) => (
        new Option<int?>("--threshold") { Description = $"grow when {used} passes this percentage of {capacity} (default 80)" },
        new Option<string?>("--step") { Description = $"how much to grow each time, e.g. 10G (default {defaultStep})" },
        new Option<string?>("--max") { Description = "never grow beyond this size, e.g. 2T (required to turn autogrow on)" },
        new Option<bool>("--off") { Description = "turn autogrow off" });

    private static AutoGrowDto? Policy(ParseResult p, Option<int?> threshold, Option<string?> step, Option<string?> max)
    {
        if (p.GetValue(threshold) is null && p.GetValue(step) is null && p.GetValue(max) is null)
        {
            return null;
        }

        var maxText = p.GetValue(max) ?? throw new CliException("--max is required: autogrow must know where to stop, e.g. --max 2T");
        return new AutoGrowDto(
            p.GetValue(threshold) ?? 80,
            CommandRunner.ParseSize(p.GetValue(step) ?? "10G", "--step"),
            CommandRunner.ParseSize(maxText, "--max"));
    }

    private static void Print(string what, AutoGrowDto? policy, bool json)
    {
        if (json)
        {
            Output.Json(policy);
            return;
        }

        if (policy is null)
        {
            Console.Out.WriteLine($"autogrow of {what} is off");
            return;
        }

        Output.Fields(
            ("autogrow of", what),
            ("threshold", policy.ThresholdPercent.ToString(CultureInfo.InvariantCulture) + "%"),
            ("step", Output.Size(policy.StepBytes)),
            ("max", Output.Size(policy.MaxBytes)));
    }
}
